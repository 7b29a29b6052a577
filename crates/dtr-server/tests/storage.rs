//! The storage test suite, written once and run unchanged against every
//! backend: each test body in `suite` takes an `Arc<dyn Store>`, and the
//! `backends!` macro generates one `#[tokio::test]` per body in
//! `mod sqlite` (in-memory) and in `mod postgres` (a fresh database per
//! test, see `support/pg.rs`). Concurrency tests use a multi-threaded
//! runtime so racing calls really overlap on the PostgreSQL pool.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/pg.rs"]
mod pg;

use dtr_proto::deferral::DeferralState;
use dtr_proto::lifecycle::Transition;
use dtr_server::store::{
    AuthorizationCodeRecord, AuthorizationRequestRecord, CallbackOutcome, ClientRecord,
    ConsoleSession, Consumed, DeferralFilter, DeferralRecord, FrontChannel, IssuedToken,
    NewDeferral, NewHandle, PollUpdate, RefreshTokenRecord, SessionRecord, Store, StoredHandle,
    TokenFamilyRecord, UserRecord, UserTokenRecord,
};
use dtr_server::store::{StoreResult, TransitionWrite};
use std::sync::Arc;

/// The transitions the contract was first written against, each now one
/// row of the lifecycle table applied through `DeferralStore::transition`
/// (the assertions stay as they were).
#[async_trait::async_trait]
trait Transitions {
    async fn approve(&self, id: &str, granted_scope: &str, now: i64) -> StoreResult<bool>;
    async fn deny(
        &self,
        id: &str,
        reason: &str,
        from_approved: bool,
        now: i64,
    ) -> StoreResult<bool>;
    async fn set_decided_by(&self, id: &str, by: &str) -> StoreResult<()>;
    async fn redeem(&self, id: &str, now: i64) -> StoreResult<bool>;
    async fn cancel(&self, code_hash: &str, client_id: &str, now: i64) -> StoreResult<bool>;
    async fn resolve_interaction(
        &self,
        handle_hash: &str,
        approve: bool,
        by: &str,
        now: i64,
    ) -> StoreResult<bool>;
    async fn approve_due(&self, now: i64) -> StoreResult<u64>;
    async fn expire_due(&self, now: i64) -> StoreResult<u64>;
}

#[async_trait::async_trait]
impl Transitions for Arc<dyn Store> {
    async fn approve(&self, id: &str, granted_scope: &str, now: i64) -> StoreResult<bool> {
        let w = TransitionWrite {
            granted_scope: Some(granted_scope.into()),
            ..TransitionWrite::new(Transition::Approve, id)
        };
        Ok(self.transition(&w, now).await?.is_some())
    }
    async fn deny(
        &self,
        id: &str,
        reason: &str,
        from_approved: bool,
        now: i64,
    ) -> StoreResult<bool> {
        let t = if from_approved {
            Transition::Lapse
        } else {
            Transition::Deny
        };
        let w = TransitionWrite {
            deny_reason: Some(reason.into()),
            ..TransitionWrite::new(t, id)
        };
        Ok(self.transition(&w, now).await?.is_some())
    }
    async fn set_decided_by(&self, _id: &str, _by: &str) -> StoreResult<()> {
        // Written by the decision's own update now.
        Ok(())
    }
    async fn redeem(&self, id: &str, now: i64) -> StoreResult<bool> {
        let w = TransitionWrite::new(Transition::Redeem, id);
        Ok(self.transition(&w, now).await?.is_some())
    }
    async fn cancel(&self, code_hash: &str, client_id: &str, now: i64) -> StoreResult<bool> {
        let Some(d) = self.deferral_by_code(code_hash).await? else {
            return Ok(false);
        };
        if d.client_id != client_id {
            return Ok(false);
        }
        let w = TransitionWrite::new(Transition::Cancel, &d.id);
        Ok(self.transition(&w, now).await?.is_some())
    }
    async fn resolve_interaction(
        &self,
        handle_hash: &str,
        approve: bool,
        by: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let Some(d) = self.deferral_by_interaction(handle_hash).await? else {
            return Ok(false);
        };
        let w = TransitionWrite {
            decided_by: Some(by.into()),
            deny_reason: (!approve).then(|| "denied at interaction".into()),
            handle_hash: Some(handle_hash.into()),
            ..TransitionWrite::new(
                if approve {
                    Transition::Approve
                } else {
                    Transition::Deny
                },
                &d.id,
            )
        };
        Ok(self.transition(&w, now).await?.is_some())
    }
    async fn approve_due(&self, now: i64) -> StoreResult<u64> {
        Ok(self
            .transition_due(Transition::AutoApprove, now)
            .await?
            .len() as u64)
    }
    async fn expire_due(&self, now: i64) -> StoreResult<u64> {
        Ok(self.transition_due(Transition::Expire, now).await?.len() as u64)
    }
}

/// "Now" of the tests: times are parameters (STYLE.md), never the wall clock.
const T0: i64 = 1_800_000_000_000;
const LIFE: i64 = 600_000;

fn new_deferral(id: &str, client: &str, created_at: i64) -> NewDeferral {
    NewDeferral {
        id: id.into(),
        code_hash: format!("hash-of-{id}"),
        client_id: client.into(),
        grant_type: "client_credentials".into(),
        scope: "read payments".into(),
        authorization_details: None,
        subject: Some(client.into()),
        created_at,
        expires_at: created_at + LIFE,
        interval_ms: 5_000,
        auto_approve_at: None,
        interaction_handle: None,
        notification_token_hash: None,
        dpop_jkt: None,
        code_sealed: None,
        notification_token_sealed: None,
        callback_not_before: None,
        grant_context: None,
        approvers: vec![],
        approvals_required: 1,
        front_channel: None,
        interactive: true,
    }
}

async fn insert(s: &Arc<dyn Store>, id: &str) -> DeferralRecord {
    s.insert_deferral(&new_deferral(id, "svc", T0))
        .await
        .unwrap();
    s.deferral_by_id(id).await.unwrap().unwrap()
}

async fn state(s: &Arc<dyn Store>, id: &str) -> DeferralState {
    s.deferral_by_id(id).await.unwrap().unwrap().state
}

fn client(id: &str) -> ClientRecord {
    ClientRecord {
        client_id: id.into(),
        secret_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        auth_method: "client_secret_basic".into(),
        grant_types: vec!["client_credentials".into()],
        scope: "read write".into(),
        redirect_uris: vec!["https://app.example/cb".into()],
        jwks: Some(serde_json::json!({"keys": []})),
        notification_endpoint: Some("https://app.example/notify".into()),
        enabled: true,
        admin_disabled: false,
        dpop_bound_access_tokens: false,
        registration_token_hash: None,
        metadata: None,
        require_par: false,
        deferred_authorization_endpoint: false,
        require_signed_request_object: false,
        jwks_uri: None,
        owner: Some("alice".into()),
    }
}

/// A handle as the server stores it: the store only ever sees and matches
/// the hash, and keeps the sealed copy as an opaque value.
fn handle(h: &str) -> StoredHandle {
    StoredHandle {
        hash: format!("hash-of-{h}"),
        sealed: format!("sealed-{h}"),
    }
}

fn poll(rec: &DeferralRecord, at: i64, slow_downs: u32, block: bool) -> PollUpdate {
    PollUpdate {
        id: rec.id.clone(),
        expected_last_polled_at: rec.last_polled_at,
        expected_slow_down_count: rec.slow_down_count,
        polled_at: at,
        slow_down_count: slow_downs,
        block,
        interval_ms: rec.interval_ms,
        expires_at: rec.expires_at,
    }
}

/// The test bodies: one per behaviour of the storage traits.
mod suite {
    use super::*;

    pub async fn insert_and_lookup(s: Arc<dyn Store>) {
        let mut d = new_deferral("dfr_1", "svc", T0);
        d.authorization_details = Some(serde_json::json!([{"type": "payment", "amount": "10"}]));
        d.auto_approve_at = Some(T0 + 1_000);
        d.interaction_handle = Some(handle("handle-1"));
        d.notification_token_hash = Some("nth".into());
        d.dpop_jkt = Some("jkt-1".into());
        s.insert_deferral(&d).await.unwrap();

        let by_code = s.deferral_by_code("hash-of-dfr_1").await.unwrap().unwrap();
        assert_eq!(by_code.id, "dfr_1");
        assert_eq!(by_code.client_id, "svc");
        assert_eq!(by_code.grant_type, "client_credentials");
        assert_eq!(by_code.scope, "read payments");
        assert_eq!(by_code.authorization_details, d.authorization_details);
        assert_eq!(by_code.subject.as_deref(), Some("svc"));
        assert_eq!(by_code.state, DeferralState::Pending);
        assert_eq!(by_code.interaction_handle, Some(handle("handle-1")));
        assert_eq!(by_code.created_at, T0);
        assert_eq!(by_code.expires_at, T0 + LIFE);
        assert_eq!(by_code.interval_ms, 5_000);
        assert_eq!(by_code.auto_approve_at, Some(T0 + 1_000));
        assert_eq!(by_code.last_polled_at, None);
        assert_eq!(by_code.slow_down_count, 0);
        assert!(!by_code.polling_blocked);
        assert_eq!(by_code.granted_scope, None);
        assert_eq!(by_code.resolved_at, None);
        assert_eq!(by_code.redeemed_at, None);
        assert_eq!(by_code.dpop_jkt.as_deref(), Some("jkt-1"));

        assert_eq!(
            s.deferral_by_id("dfr_1").await.unwrap(),
            Some(by_code.clone())
        );
        assert_eq!(
            s.deferral_by_interaction("hash-of-handle-1").await.unwrap(),
            Some(by_code)
        );
        assert!(s.deferral_by_code("unknown").await.unwrap().is_none());
        assert!(s.deferral_by_id("unknown").await.unwrap().is_none());
        assert!(s
            .deferral_by_interaction("unknown")
            .await
            .unwrap()
            .is_none());
        // The code hash is unique: a second deferral with the same hash fails.
        let mut dup = new_deferral("dfr_2", "svc", T0);
        dup.code_hash = "hash-of-dfr_1".into();
        assert!(s.insert_deferral(&dup).await.is_err());
        s.ping().await.unwrap();
    }

    /// Every transition from every state, applied by the store, agrees
    /// with the lifecycle table's pure rule (`dtr_proto::lifecycle::apply`):
    /// the store holds no rule of its own.
    pub async fn transitions_follow_the_table(s: Arc<dyn Store>) {
        use dtr_proto::lifecycle::{apply, Timing};
        let states = [
            DeferralState::Pending,
            DeferralState::Approved,
            DeferralState::Denied,
            DeferralState::Cancelled,
            DeferralState::Expired,
            DeferralState::Redeemed,
        ];
        for t in Transition::ALL {
            for from in states {
                let id = format!("{}-{}", t.as_str(), from);
                let mut d = new_deferral(&id, "svc", T0);
                // Due for `auto_approve`, so the sweep can take it.
                d.auto_approve_at = Some(T0);
                s.insert_deferral(&d).await.unwrap();
                let w = |t| TransitionWrite::new(t, &id);
                let reach = match from {
                    DeferralState::Pending => vec![],
                    DeferralState::Approved => vec![Transition::Approve],
                    DeferralState::Denied => vec![Transition::Deny],
                    DeferralState::Cancelled => vec![Transition::Cancel],
                    DeferralState::Redeemed => vec![Transition::Approve, Transition::Redeem],
                    DeferralState::Expired => vec![],
                };
                for step in reach {
                    assert!(
                        s.transition(&w(step), T0 + 1).await.unwrap().is_some(),
                        "{id}"
                    );
                }
                if from == DeferralState::Expired {
                    assert!(s
                        .transition_due(Transition::Expire, T0 + LIFE)
                        .await
                        .unwrap()
                        .iter()
                        .any(|x| x.id == id));
                }
                let now = match t.rule().timing {
                    Timing::Expired => T0 + LIFE + 1,
                    _ => T0 + 2,
                };
                let expected = apply(t, from, T0 + LIFE, now);
                let applied = match t {
                    Transition::AutoApprove | Transition::Expire => s
                        .transition_due(t, now)
                        .await
                        .unwrap()
                        .iter()
                        .any(|x| x.id == id),
                    _ => s.transition(&w(t), now).await.unwrap().is_some(),
                };
                assert_eq!(applied, expected.is_ok(), "{t:?} from {from}");
                let after = s.deferral_by_id(&id).await.unwrap().unwrap().state;
                assert_eq!(after, expected.unwrap_or(from), "{t:?} from {from}");
            }
        }
    }

    /// Four eyes: an approval counts once per approver, only while the
    /// deferral is pending and alive; the event log is append-only and
    /// ordered, and goes with its deferral when that is pruned.
    pub async fn approvals_and_events(s: Arc<dyn Store>) {
        use dtr_server::store::{Approval, DeferralEvent};
        insert(&s, "fe").await;
        let a = |by: &str, at: i64, scope: &str| Approval {
            deferral_id: "fe".into(),
            by: by.into(),
            at,
            scope: scope.into(),
            approved_until: (by == "carol").then_some(T0 + 100),
            authorization_details: (by == "carol")
                .then(|| serde_json::json!([{"type": "t", "n": 1}, null])),
        };
        assert!(s
            .add_approval(&a("admin", T0 + 1, "read"), T0 + 1)
            .await
            .unwrap());
        assert!(!s
            .add_approval(&a("admin", T0 + 2, "read"), T0 + 2)
            .await
            .unwrap());
        assert!(s
            .add_approval(&a("carol", T0 + 3, "read payments"), T0 + 3)
            .await
            .unwrap());
        let got = s.approvals("fe").await.unwrap();
        assert_eq!(
            got.iter()
                .map(|x| (x.by.as_str(), x.scope.as_str()))
                .collect::<Vec<_>>(),
            [("admin", "read"), ("carol", "read payments")]
        );
        assert_eq!(got[1].approved_until, Some(T0 + 100));
        assert_eq!(
            got[1].authorization_details,
            Some(serde_json::json!([{"type": "t", "n": 1}, null]))
        );
        assert_eq!(got[0].authorization_details, None);
        // Not after its lifetime, nor once decided.
        assert!(!s
            .add_approval(&a("dave", T0 + LIFE, "read"), T0 + LIFE)
            .await
            .unwrap());
        assert!(s.approve("fe", "read", T0 + 4).await.unwrap());
        assert!(!s
            .add_approval(&a("erin", T0 + 5, "read"), T0 + 5)
            .await
            .unwrap());

        for (i, kind) in ["created", "approval", "approved"].iter().enumerate() {
            s.append_event(&DeferralEvent {
                deferral_id: "fe".into(),
                kind: (*kind).into(),
                by: Some("admin".into()),
                at: T0 + i as i64,
                detail: (i == 1).then(|| serde_json::json!({"scope": "read"})),
            })
            .await
            .unwrap();
        }
        let events = s.events("fe").await.unwrap();
        assert_eq!(
            events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
            ["created", "approval", "approved"]
        );
        assert_eq!(events[1].detail, Some(serde_json::json!({"scope": "read"})));
        assert_eq!(s.events_since(T0 + 1, 10).await.unwrap().len(), 2);
        assert_eq!(s.events_since(T0, 1).await.unwrap().len(), 1);
        // Pruned with the deferral (DTR-37).
        s.transition_due(Transition::Expire, T0 + LIFE)
            .await
            .unwrap();
        s.prune_deferrals(T0 + 10 * LIFE).await.unwrap();
        assert!(s.approvals("fe").await.unwrap().is_empty());
        assert!(s.events("fe").await.unwrap().is_empty());
    }

    pub async fn approve_applies_once(s: Arc<dyn Store>) {
        insert(&s, "a").await;
        assert!(s.approve("a", "read", T0 + 1).await.unwrap());
        let r = s.deferral_by_id("a").await.unwrap().unwrap();
        assert_eq!(r.state, DeferralState::Approved);
        assert_eq!(r.granted_scope.as_deref(), Some("read"));
        assert_eq!(r.resolved_at, Some(T0 + 1));
        assert!(!s.approve("a", "read payments", T0 + 2).await.unwrap());
        assert_eq!(
            s.deferral_by_id("a")
                .await
                .unwrap()
                .unwrap()
                .granted_scope
                .as_deref(),
            Some("read")
        );
        // Past its lifetime nothing approves it.
        insert(&s, "late").await;
        assert!(!s.approve("late", "read", T0 + LIFE).await.unwrap());
        assert_eq!(state(&s, "late").await, DeferralState::Pending);
        assert!(!s.approve("unknown", "read", T0).await.unwrap());
        s.set_decided_by("a", "admin").await.unwrap();
    }

    pub async fn deny_from_pending_and_only_explicitly_from_approved(s: Arc<dyn Store>) {
        insert(&s, "p").await;
        assert!(s.deny("p", "no", false, T0 + 1).await.unwrap());
        let r = s.deferral_by_id("p").await.unwrap().unwrap();
        assert_eq!(r.state, DeferralState::Denied);
        assert_eq!(r.deny_reason.as_deref(), Some("no"));
        assert!(!s.deny("p", "again", true, T0 + 2).await.unwrap());
        assert!(!s.approve("p", "read", T0 + 2).await.unwrap());

        insert(&s, "a").await;
        assert!(s.approve("a", "read", T0 + 1).await.unwrap());
        assert!(!s.deny("a", "stale", false, T0 + 2).await.unwrap());
        assert_eq!(state(&s, "a").await, DeferralState::Approved);
        // DTR-23: consent staleness may deny an approved deferral.
        assert!(s.deny("a", "stale", true, T0 + 2).await.unwrap());
        assert_eq!(state(&s, "a").await, DeferralState::Denied);
        assert!(!s.redeem("a", T0 + 3).await.unwrap());

        insert(&s, "late").await;
        assert!(!s.deny("late", "x", false, T0 + LIFE).await.unwrap());
    }

    pub async fn redeem_applies_once(s: Arc<dyn Store>) {
        insert(&s, "r").await;
        assert!(
            !s.redeem("r", T0 + 1).await.unwrap(),
            "pending is not redeemable"
        );
        assert!(s.approve("r", "read", T0 + 1).await.unwrap());
        assert!(s.redeem("r", T0 + 2).await.unwrap());
        let r = s.deferral_by_id("r").await.unwrap().unwrap();
        assert_eq!(r.state, DeferralState::Redeemed);
        assert_eq!(r.redeemed_at, Some(T0 + 2));
        assert!(!s.redeem("r", T0 + 3).await.unwrap(), "DTR-21: once");
        assert!(!s.cancel("hash-of-r", "svc", T0 + 3).await.unwrap());

        insert(&s, "late").await;
        assert!(s.approve("late", "read", T0 + 1).await.unwrap());
        assert!(!s.redeem("late", T0 + LIFE).await.unwrap(), "expired");
    }

    pub async fn redeem_exactly_once_under_50_concurrent_callers(s: Arc<dyn Store>) {
        insert(&s, "hot").await;
        assert!(s.approve("hot", "read", T0 + 1).await.unwrap());
        let barrier = Arc::new(tokio::sync::Barrier::new(50));
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let (s, b) = (s.clone(), barrier.clone());
                tokio::spawn(async move {
                    b.wait().await;
                    s.redeem("hot", T0 + 2 + i).await.unwrap()
                })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1, "DTR-21: one token response, never two");
        assert_eq!(state(&s, "hot").await, DeferralState::Redeemed);
    }

    pub async fn cancel_by_owner_only(s: Arc<dyn Store>) {
        insert(&s, "c").await;
        assert!(!s.cancel("hash-of-c", "other", T0 + 1).await.unwrap());
        assert!(!s.cancel("unknown", "svc", T0 + 1).await.unwrap());
        assert!(s.cancel("hash-of-c", "svc", T0 + 1).await.unwrap());
        let r = s.deferral_by_id("c").await.unwrap().unwrap();
        assert_eq!(r.state, DeferralState::Cancelled);
        assert_eq!(r.resolved_at, Some(T0 + 1));
        assert!(
            !s.cancel("hash-of-c", "svc", T0 + 2).await.unwrap(),
            "DTR-35"
        );
        assert!(!s.approve("c", "read", T0 + 2).await.unwrap());

        // DTR-34: approved but not collected becomes cancelled, no token.
        insert(&s, "ca").await;
        assert!(s.approve("ca", "read", T0 + 1).await.unwrap());
        assert!(s.cancel("hash-of-ca", "svc", T0 + 2).await.unwrap());
        assert!(!s.redeem("ca", T0 + 3).await.unwrap());

        insert(&s, "late").await;
        assert!(!s.cancel("hash-of-late", "svc", T0 + LIFE).await.unwrap());
    }

    pub async fn record_poll_is_a_compare_and_set(s: Arc<dyn Store>) {
        let r0 = insert(&s, "p").await;
        assert!(s
            .record_poll(&poll(&r0, T0 + 1, 0, false), T0 + 1)
            .await
            .unwrap());
        // A second writer holding the same stale read loses.
        assert!(!s
            .record_poll(&poll(&r0, T0 + 2, 1, false), T0 + 2)
            .await
            .unwrap());
        let r1 = s.deferral_by_id("p").await.unwrap().unwrap();
        assert_eq!(r1.last_polled_at, Some(T0 + 1));
        assert_eq!(r1.slow_down_count, 0);
        // With the fresh read it applies (a slow_down, DTR-19).
        assert!(s
            .record_poll(&poll(&r1, T0 + 2, 1, false), T0 + 2)
            .await
            .unwrap());
        let r2 = s.deferral_by_id("p").await.unwrap().unwrap();
        assert_eq!((r2.last_polled_at, r2.slow_down_count), (Some(T0 + 2), 1));
        assert_eq!(r2.state, DeferralState::Pending);
        // Escalation blocks polling and denies (DTR-19).
        assert!(s
            .record_poll(&poll(&r2, T0 + 3, 1, true), T0 + 3)
            .await
            .unwrap());
        let r3 = s.deferral_by_id("p").await.unwrap().unwrap();
        assert!(r3.polling_blocked);
        assert_eq!(r3.state, DeferralState::Denied);
        assert_eq!(r3.resolved_at, Some(T0 + 3));
        // Once the deferral left `pending`, a `slow_down` is not recorded,
        // and no poll changes it (a plain poll may be remembered in memory
        // by a one-node store: see `DeferralStore::record_poll`).
        assert!(!s
            .record_poll(&poll(&r3, T0 + 4, 2, false), T0 + 4)
            .await
            .unwrap());
        let _ = s
            .record_poll(&poll(&r3, T0 + 4, 1, false), T0 + 4)
            .await
            .unwrap();
        let r4 = s.deferral_by_id("p").await.unwrap().unwrap();
        assert_eq!((r4.state, r4.slow_down_count), (DeferralState::Denied, 1));
        assert!(r4.polling_blocked);
        // Nor after expiry.
        let late = insert(&s, "late").await;
        assert!(!s
            .record_poll(&poll(&late, T0 + LIFE, 0, false), T0 + LIFE)
            .await
            .unwrap());
    }

    pub async fn record_poll_has_one_winner_under_concurrency(s: Arc<dyn Store>) {
        // Two nodes polling at the same moment: only one poll counts.
        let r = insert(&s, "p").await;
        let barrier = Arc::new(tokio::sync::Barrier::new(20));
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let (s, b, r) = (s.clone(), barrier.clone(), r.clone());
                tokio::spawn(async move {
                    b.wait().await;
                    s.record_poll(&poll(&r, T0 + 10 + i, 0, false), T0 + 10)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1);
    }

    pub async fn approve_due_and_expire_due(s: Arc<dyn Store>) {
        let mut auto = new_deferral("auto", "svc", T0);
        auto.auto_approve_at = Some(T0 + 10_000);
        s.insert_deferral(&auto).await.unwrap();
        let mut auto_late = new_deferral("auto_late", "svc", T0);
        auto_late.auto_approve_at = Some(T0 + LIFE + 1);
        s.insert_deferral(&auto_late).await.unwrap();
        insert(&s, "manual").await;
        insert(&s, "approved").await;
        assert!(s.approve("approved", "read", T0 + 1).await.unwrap());
        insert(&s, "redeemed").await;
        assert!(s.approve("redeemed", "read", T0 + 1).await.unwrap());
        assert!(s.redeem("redeemed", T0 + 2).await.unwrap());

        assert_eq!(s.approve_due(T0 + 9_999).await.unwrap(), 0);
        assert_eq!(s.approve_due(T0 + 10_000).await.unwrap(), 1);
        assert_eq!(s.approve_due(T0 + 10_001).await.unwrap(), 0, "once");
        let r = s.deferral_by_id("auto").await.unwrap().unwrap();
        assert_eq!(r.state, DeferralState::Approved);
        assert_eq!(r.granted_scope.as_deref(), Some("read payments"));
        // Never approves past the lifetime.
        assert_eq!(s.approve_due(T0 + LIFE + 1).await.unwrap(), 0);

        assert_eq!(s.expire_due(T0 + LIFE - 1).await.unwrap(), 0);
        // auto (approved), auto_late, manual, approved: undecided or
        // uncollected; redeemed stays redeemed.
        assert_eq!(s.expire_due(T0 + LIFE).await.unwrap(), 4);
        assert_eq!(s.expire_due(T0 + LIFE).await.unwrap(), 0);
        for id in ["auto", "auto_late", "manual", "approved"] {
            assert_eq!(state(&s, id).await, DeferralState::Expired, "{id}");
        }
        assert_eq!(state(&s, "redeemed").await, DeferralState::Redeemed);
    }

    pub async fn front_channel_proof_and_interaction_start_are_recorded_once(s: Arc<dyn Store>) {
        let mut d = new_deferral("fc", "web", T0);
        d.grant_type = "authorization_code".into();
        d.front_channel = Some(FrontChannel {
            pkce_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
            redirect_uri: Some("https://app.example/cb".into()),
        });
        d.interactive = false;
        s.insert_deferral(&d).await.unwrap();
        let r = s.deferral_by_code("hash-of-fc").await.unwrap().unwrap();
        assert_eq!(r.front_channel, d.front_channel);
        assert!(!r.interactive);
        assert_eq!(r.pkce_verified_at, None);
        assert!(s.mark_pkce_verified("fc", T0 + 1).await.unwrap());
        assert!(!s.mark_pkce_verified("fc", T0 + 2).await.unwrap(), "once");
        let r = s.deferral_by_id("fc").await.unwrap().unwrap();
        assert_eq!(r.pkce_verified_at, Some(T0 + 1));
        // A deferral from the token endpoint has no proof to record.
        insert(&s, "plain").await;
        assert!(!s.mark_pkce_verified("plain", T0 + 1).await.unwrap());
        let r = s.deferral_by_id("plain").await.unwrap().unwrap();
        assert_eq!((r.front_channel, r.interactive), (None, true));

        // The interaction begins once per handle; a new handle starts over.
        assert!(!s.mark_interaction_started("plain", T0 + 1).await.unwrap());
        let mut i = new_deferral("int", "svc", T0);
        i.interaction_handle = Some(handle("h-1"));
        s.insert_deferral(&i).await.unwrap();
        assert!(s.mark_interaction_started("int", T0 + 1).await.unwrap());
        assert!(!s.mark_interaction_started("int", T0 + 2).await.unwrap());
        let r = s.deferral_by_id("int").await.unwrap().unwrap();
        assert_eq!(r.interaction_started_at, Some(T0 + 1));
        assert!(s
            .set_interaction("int", Some(&handle("h-2")), T0 + 3)
            .await
            .unwrap());
        let r = s.deferral_by_id("int").await.unwrap().unwrap();
        assert_eq!(r.interaction_started_at, None);
        assert!(s.mark_interaction_started("int", T0 + 4).await.unwrap());
        // Not after its lifetime.
        assert!(s
            .set_interaction("int", Some(&handle("h-3")), T0 + 5)
            .await
            .unwrap());
        assert!(!s
            .mark_interaction_started("int", T0 + LIFE + 1)
            .await
            .unwrap());

        // The clients' opt-ins survive the round trip.
        let mut c = client("web");
        c.deferred_authorization_endpoint = true;
        c.require_signed_request_object = true;
        s.upsert_client(&c).await.unwrap();
        let got = s.get_client("web").await.unwrap().unwrap();
        assert!(got.deferred_authorization_endpoint && got.require_signed_request_object);
    }

    pub async fn progress_and_interaction_only_while_pending(s: Arc<dyn Store>) {
        insert(&s, "p").await;
        assert!(s
            .set_progress("p", Some("document_review"), T0 + 1)
            .await
            .unwrap());
        assert_eq!(
            s.deferral_by_id("p")
                .await
                .unwrap()
                .unwrap()
                .progress
                .as_deref(),
            Some("document_review")
        );
        assert!(s.set_progress("p", None, T0 + 1).await.unwrap());
        assert_eq!(s.deferral_by_id("p").await.unwrap().unwrap().progress, None);
        assert!(s
            .set_interaction("p", Some(&handle("h1")), T0 + 1)
            .await
            .unwrap());
        let r = s
            .deferral_by_interaction("hash-of-h1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.id.as_str(), r.interaction_handle),
            ("p", Some(handle("h1")))
        );
        assert!(s.set_interaction("p", None, T0 + 1).await.unwrap());
        assert!(s
            .deferral_by_interaction("hash-of-h1")
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            s.deferral_by_id("p")
                .await
                .unwrap()
                .unwrap()
                .interaction_handle,
            None
        );

        assert!(
            !s.set_progress("p", Some("x"), T0 + LIFE).await.unwrap(),
            "expired"
        );
        assert!(!s
            .set_interaction("p", Some(&handle("h2")), T0 + LIFE)
            .await
            .unwrap());
        assert!(s.approve("p", "read", T0 + 2).await.unwrap());
        assert!(!s.set_progress("p", Some("x"), T0 + 3).await.unwrap());
        assert!(!s
            .set_interaction("p", Some(&handle("h3")), T0 + 3)
            .await
            .unwrap());
        assert!(!s.set_progress("unknown", Some("x"), T0).await.unwrap());
    }

    pub async fn resolve_interaction_uses_the_handle_once(s: Arc<dyn Store>) {
        insert(&s, "yes").await;
        insert(&s, "no").await;
        assert!(s
            .set_interaction("yes", Some(&handle("hy")), T0)
            .await
            .unwrap());
        assert!(s
            .set_interaction("no", Some(&handle("hn")), T0)
            .await
            .unwrap());

        assert!(s
            .resolve_interaction("hash-of-hy", true, "user:alice", T0 + 1)
            .await
            .unwrap());
        let r = s.deferral_by_id("yes").await.unwrap().unwrap();
        assert_eq!(r.state, DeferralState::Approved);
        assert_eq!(r.granted_scope.as_deref(), Some("read payments"));
        assert_eq!(r.interaction_handle, None);
        assert!(!s
            .resolve_interaction("hash-of-hy", false, "user:alice", T0 + 2)
            .await
            .unwrap());
        assert_eq!(state(&s, "yes").await, DeferralState::Approved);

        assert!(!s
            .resolve_interaction("hash-of-hn", false, "user:bob", T0 + LIFE)
            .await
            .unwrap());
        assert!(s
            .resolve_interaction("hash-of-hn", false, "user:bob", T0 + 1)
            .await
            .unwrap());
        let r = s.deferral_by_id("no").await.unwrap().unwrap();
        assert_eq!(r.state, DeferralState::Denied);
        assert_eq!(r.granted_scope, None);
        assert!(r.deny_reason.is_some());
        assert!(!s
            .resolve_interaction("unknown", true, "x", T0)
            .await
            .unwrap());
    }

    pub async fn second_handles_name_their_deferral(s: Arc<dyn Store>) {
        let mut d = new_deferral("d1", "bank", T0);
        d.grant_type = "urn:openid:params:grant-type:ciba".into();
        d.subject = Some("alice".into());
        s.insert_deferral(&d).await.unwrap();
        s.insert_deferral(&new_deferral("d2", "bank", T0 + 1))
            .await
            .unwrap();
        assert!(s.deferral_by_handle("h1").await.unwrap().is_none());
        assert!(s.handle_secrets("d1").await.unwrap().is_none());
        let h = NewHandle {
            hash: "h1".into(),
            sealed: Some("sealed-handle".into()),
            token_sealed: None,
        };
        assert!(s.attach_handle("d1", "bank", &h, T0).await.unwrap());
        assert_eq!(s.deferral_by_handle("h1").await.unwrap().unwrap().id, "d1");
        assert_eq!(s.handle_secrets("d1").await.unwrap(), Some(h.clone()));
        // One second handle per deferral, and a hash names one deferral.
        let again = NewHandle {
            hash: "h2".into(),
            ..Default::default()
        };
        assert!(!s.attach_handle("d1", "bank", &again, T0).await.unwrap());
        assert!(!s.attach_handle("d2", "bank", &h, T0).await.unwrap());
        assert!(s.deferral_by_handle("h2").await.unwrap().is_none());
        // The code is not a handle, nor the handle a code.
        assert!(s.deferral_by_handle("hash-of-d1").await.unwrap().is_none());
        assert!(s.deferral_by_code("h1").await.unwrap().is_none());
        // The user's page lists by subject and grant type.
        let f = DeferralFilter {
            limit: 10,
            subject: Some("alice".into()),
            grant_type: Some("urn:openid:params:grant-type:ciba".into()),
            ..Default::default()
        };
        let ids: Vec<String> = s
            .list_deferrals(&f, T0 + 2)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["d1"]);
    }

    pub async fn list_filters_and_orders_newest_first(s: Arc<dyn Store>) {
        for (i, (id, client)) in [("d1", "svc"), ("d2", "other"), ("d3", "svc"), ("d4", "svc")]
            .into_iter()
            .enumerate()
        {
            s.insert_deferral(&new_deferral(id, client, T0 + i as i64 * 1_000))
                .await
                .unwrap();
        }
        assert!(s.approve("d3", "read", T0 + 5_000).await.unwrap());
        let ids = |v: Vec<DeferralRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        let all = DeferralFilter {
            limit: 100,
            ..Default::default()
        };
        assert_eq!(
            ids(s.list_deferrals(&all, T0 + 5_000).await.unwrap()),
            ["d4", "d3", "d2", "d1"]
        );
        let pending_svc = DeferralFilter {
            state: Some(DeferralState::Pending),
            client_id: Some("svc".into()),
            limit: 100,
            ..Default::default()
        };
        assert_eq!(
            ids(s.list_deferrals(&pending_svc, T0 + 5_000).await.unwrap()),
            ["d4", "d1"]
        );
        let approved = DeferralFilter {
            state: Some(DeferralState::Approved),
            ..all.clone()
        };
        assert_eq!(
            ids(s.list_deferrals(&approved, T0 + 5_000).await.unwrap()),
            ["d3"]
        );
        let two = DeferralFilter {
            limit: 2,
            ..all.clone()
        };
        assert_eq!(
            ids(s.list_deferrals(&two, T0 + 5_000).await.unwrap()),
            ["d4", "d3"]
        );
        // The effective state: d1 has lived its lifetime at T0 + LIFE even
        // before the sweeper wrote `expired`.
        let expired = DeferralFilter {
            state: Some(DeferralState::Expired),
            ..all.clone()
        };
        assert_eq!(
            ids(s.list_deferrals(&expired, T0 + LIFE).await.unwrap()),
            ["d1"]
        );
        assert_eq!(
            ids(s.list_deferrals(&pending_svc, T0 + LIFE).await.unwrap()),
            ["d4"]
        );
        let nobody = DeferralFilter {
            client_id: Some("nobody".into()),
            ..all
        };
        assert!(s.list_deferrals(&nobody, T0).await.unwrap().is_empty());
    }

    pub async fn count_pending_by_client(s: Arc<dyn Store>) {
        s.insert_deferral(&new_deferral("a1", "a", T0))
            .await
            .unwrap();
        s.insert_deferral(&new_deferral("a2", "a", T0))
            .await
            .unwrap();
        s.insert_deferral(&new_deferral("b1", "b", T0))
            .await
            .unwrap();
        s.insert_deferral(&new_deferral("b2", "b", T0))
            .await
            .unwrap();
        assert!(s.approve("b2", "read", T0 + 1).await.unwrap());
        assert_eq!(
            s.count_pending_by_client(T0 + 2).await.unwrap(),
            vec![("a".to_owned(), 2), ("b".to_owned(), 1)]
        );
        assert!(s
            .count_pending_by_client(T0 + LIFE)
            .await
            .unwrap()
            .is_empty());
    }

    pub async fn clients_upsert_keeps_admin_disabled(s: Arc<dyn Store>) {
        assert!(s.get_client("svc").await.unwrap().is_none());
        assert!(
            !s.set_client_admin_disabled("svc", true).await.unwrap(),
            "unknown"
        );
        s.upsert_client(&client("svc")).await.unwrap();
        s.upsert_client(&client("alpha")).await.unwrap();
        assert_eq!(s.get_client("svc").await.unwrap(), Some(client("svc")));
        let listed: Vec<String> = s
            .list_clients()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.client_id)
            .collect();
        assert_eq!(listed, ["alpha", "svc"]);

        assert!(s.set_client_admin_disabled("svc", true).await.unwrap());
        let mut changed = client("svc");
        changed.scope = "read".into();
        changed.secret_hash = None;
        changed.auth_method = "none".into();
        changed.jwks = None;
        changed.redirect_uris = vec![];
        changed.enabled = false;
        changed.dpop_bound_access_tokens = true;
        changed.owner = None;
        s.upsert_client(&changed).await.unwrap();
        let got = s.get_client("svc").await.unwrap().unwrap();
        assert!(
            got.admin_disabled,
            "an admin's decision survives a reload (DTR-23)"
        );
        assert_eq!(got.scope, "read");
        assert_eq!(got.secret_hash, None);
        assert_eq!(got.jwks, None);
        assert!(got.redirect_uris.is_empty());
        assert!(!got.enabled);
        assert!(got.dpop_bound_access_tokens);
        assert_eq!(got.owner, None);
        assert!(s.set_client_admin_disabled("svc", false).await.unwrap());
        assert!(!s.get_client("svc").await.unwrap().unwrap().admin_disabled);
    }

    pub async fn tokens_revoke_and_prune(s: Arc<dyn Store>) {
        let t = |jti: &str, exp: i64| IssuedToken {
            jti: jti.into(),
            client_id: "svc".into(),
            expires_at: exp,
            issued_at: T0,
            deferral_id: Some("dfr".into()),
            parents: vec![],
        };
        s.record_token(&t("j1", T0 + 1_000)).await.unwrap();
        s.record_token(&t("j2", T0 + 5_000)).await.unwrap();
        assert!(!s.token_revoked("j1").await.unwrap());
        assert!(
            s.token_revoked("unknown").await.unwrap(),
            "unknown counts as revoked"
        );
        assert!(!s.revoke_token("j1", "other", T0).await.unwrap(), "foreign");
        assert!(!s.token_revoked("j1").await.unwrap());
        assert!(s.revoke_token("j1", "svc", T0).await.unwrap());
        assert!(s.token_revoked("j1").await.unwrap());
        assert!(
            !s.revoke_token("j1", "svc", T0 + 1).await.unwrap(),
            "already"
        );
        assert!(!s.revoke_token("unknown", "svc", T0).await.unwrap());

        assert_eq!(s.prune_tokens(T0 + 1_000).await.unwrap(), 0);
        assert_eq!(s.prune_tokens(T0 + 1_001).await.unwrap(), 1);
        assert!(!s.token_revoked("j2").await.unwrap());
        assert_eq!(s.prune_tokens(T0 + 10_000).await.unwrap(), 1);
        assert!(s.token_revoked("j2").await.unwrap());
    }

    /// RFC 8693 section 2.1, RFC 9700 section 2.3: a token made from
    /// others (a token exchange) is valid only while each of them is,
    /// through a whole chain of exchanges; its family's revocation and its
    /// user's disabling count like a revocation.
    pub async fn exchanged_tokens_die_with_their_parents(s: Arc<dyn Store>) {
        let t = |jti: &str, client: &str, parents: &[&str]| IssuedToken {
            jti: jti.into(),
            client_id: client.into(),
            expires_at: T0 + LIFE,
            issued_at: T0,
            deferral_id: None,
            parents: parents.iter().map(|p| (*p).to_owned()).collect(),
        };
        // A chain: root -> child -> grandchild, and a delegation made from
        // the child and an actor token.
        s.record_token(&t("root", "svc", &[])).await.unwrap();
        s.record_token(&t("actor", "agent", &[])).await.unwrap();
        s.record_token(&t("child", "gw", &["root"])).await.unwrap();
        s.record_token(&t("grand", "gw2", &["child"]))
            .await
            .unwrap();
        s.record_token(&t("deleg", "gw", &["child", "actor"]))
            .await
            .unwrap();
        for j in ["root", "actor", "child", "grand", "deleg"] {
            assert!(!s.token_revoked(j).await.unwrap(), "{j} valid");
        }
        // Revoking the actor kills only the delegation.
        assert!(s.revoke_token("actor", "agent", T0).await.unwrap());
        assert!(s.token_revoked("deleg").await.unwrap());
        assert!(!s.token_revoked("grand").await.unwrap());
        // Revoking the root kills every descendant, however deep.
        assert!(s.revoke_token("root", "svc", T0).await.unwrap());
        for j in ["child", "grand"] {
            assert!(s.token_revoked(j).await.unwrap(), "{j} dies with root");
        }
        // A token made from an unknown (pruned or forged) parent is dead.
        s.record_token(&t("orphan", "gw", &["nope"])).await.unwrap();
        assert!(s.token_revoked("orphan").await.unwrap());

        // Family revocation and a disabled user reach descendants too.
        s.upsert_user(&UserRecord {
            username: "bob".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            enabled: true,
            admin_disabled: false,
            ..UserRecord::default()
        })
        .await
        .unwrap();
        for fam in ["famA", "famB"] {
            s.insert_family(&TokenFamilyRecord {
                family_id: fam.into(),
                client_id: "web".into(),
                username: "bob".into(),
                created_at: T0,
                revoked_at: None,
            })
            .await
            .unwrap();
        }
        s.record_token(&t("a1", "web", &[])).await.unwrap();
        s.set_token_family("a1", "famA").await.unwrap();
        s.record_token(&t("a1x", "gw", &["a1"])).await.unwrap();
        s.record_token(&t("b1", "web", &[])).await.unwrap();
        s.set_token_family("b1", "famB").await.unwrap();
        s.record_token(&t("b1x", "gw", &["b1"])).await.unwrap();
        assert!(!s.token_revoked("a1x").await.unwrap());
        assert!(s.revoke_family("famA", T0).await.unwrap());
        assert!(s.token_revoked("a1").await.unwrap());
        assert!(s.token_revoked("a1x").await.unwrap());
        assert!(!s.token_revoked("b1x").await.unwrap());
        assert!(s.set_user_admin_disabled("bob", true).await.unwrap());
        assert!(s.token_revoked("b1").await.unwrap());
        assert!(s.token_revoked("b1x").await.unwrap());
        assert!(s.set_user_admin_disabled("bob", false).await.unwrap());
        assert!(!s.token_revoked("b1x").await.unwrap(), "enabled again");

        // Links are pruned with their tokens.
        assert_eq!(s.prune_tokens(T0 + LIFE + 1).await.unwrap(), 10);
        assert!(s.token_revoked("b1x").await.unwrap());
    }

    pub async fn use_once_single_winner(s: Arc<dyn Store>) {
        assert!(s.use_once("k", T0 + 60_000, T0).await.unwrap());
        assert!(
            !s.use_once("k", T0 + 60_000, T0 + 1).await.unwrap(),
            "replay"
        );
        assert!(!s.use_once("k", T0 + 90_000, T0 + 59_999).await.unwrap());
        // Past its expiry the entry protects nothing and may be taken over.
        assert!(s.use_once("k", T0 + 120_000, T0 + 60_000).await.unwrap());
        assert!(!s.use_once("k", T0 + 130_000, T0 + 60_001).await.unwrap());

        let barrier = Arc::new(tokio::sync::Barrier::new(50));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (s, b) = (s.clone(), barrier.clone());
                tokio::spawn(async move {
                    b.wait().await;
                    s.use_once("race", T0 + 60_000, T0).await.unwrap()
                })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1, "one proof, one acceptance (RFC 9449 section 11.1)");

        assert_eq!(s.prune_used(T0 + 60_000).await.unwrap(), 0);
        assert_eq!(s.prune_used(T0 + 60_001).await.unwrap(), 1, "race");
        assert!(!s.use_once("k", T0 + 130_000, T0 + 60_002).await.unwrap());
        assert_eq!(s.prune_used(T0 + 200_000).await.unwrap(), 1);
    }

    pub async fn signing_key_is_never_replaced(s: Arc<dyn Store>) {
        let first = s.signing_key(&|| vec![1, 2, 3], T0).await.unwrap();
        assert_eq!(first, vec![1, 2, 3]);
        let again = s.signing_key(&|| vec![9, 9, 9], T0 + 1).await.unwrap();
        assert_eq!(again, first);
    }

    pub async fn id_token_key_is_made_once_per_algorithm(s: Arc<dyn Store>) {
        assert_eq!(s.id_token_key("RS256", None, T0).await.unwrap(), None);
        let first = s.id_token_key("RS256", Some(vec![1]), T0).await.unwrap();
        assert_eq!(first, Some(vec![1]));
        // Never replaced, by a second offer (another node) or a read.
        let again = s.id_token_key("RS256", Some(vec![2]), T0).await.unwrap();
        assert_eq!(again, first);
        assert_eq!(s.id_token_key("RS256", None, T0).await.unwrap(), first);
        // Algorithms have keys of their own.
        assert_eq!(s.id_token_key("PS256", None, T0).await.unwrap(), None);
    }

    pub async fn signing_key_agrees_when_nodes_start_together(s: Arc<dyn Store>) {
        let barrier = Arc::new(tokio::sync::Barrier::new(10));
        let tasks: Vec<_> = (0..10u8)
            .map(|i| {
                let (s, b) = (s.clone(), barrier.clone());
                tokio::spawn(async move {
                    b.wait().await;
                    s.signing_key(&move || vec![i; 8], T0).await.unwrap()
                })
            })
            .collect();
        let mut keys = Vec::new();
        for t in tasks {
            keys.push(t.await.unwrap());
        }
        assert!(
            keys.windows(2).all(|w| w[0] == w[1]),
            "one key wins: {keys:?}"
        );
    }

    pub async fn prune_deletes_only_finished_and_old(s: Arc<dyn Store>) {
        for id in [
            "pending",
            "approved",
            "denied",
            "cancelled",
            "redeemed",
            "expired",
        ] {
            insert(&s, id).await;
        }
        assert!(s.approve("approved", "read", T0 + 1).await.unwrap());
        assert!(s.deny("denied", "no", false, T0 + 1).await.unwrap());
        assert!(s.cancel("hash-of-cancelled", "svc", T0 + 1).await.unwrap());
        assert!(s.approve("redeemed", "read", T0 + 1).await.unwrap());
        assert!(s.redeem("redeemed", T0 + 2).await.unwrap());
        // Until the end of the lifetime everything stays (DTR-32).
        assert_eq!(s.prune_deferrals(T0 + LIFE).await.unwrap(), 0);
        // Unswept pending/approved rows are not deleted before they are
        // marked expired.
        assert_eq!(s.prune_deferrals(T0 + LIFE + 1).await.unwrap(), 3);
        assert!(s.deferral_by_id("denied").await.unwrap().is_none());
        assert!(s.deferral_by_id("pending").await.unwrap().is_some());
        assert_eq!(s.expire_due(T0 + LIFE + 1).await.unwrap(), 3);
        assert_eq!(s.prune_deferrals(T0 + LIFE + 1).await.unwrap(), 3);
        assert!(s
            .list_deferrals(
                &DeferralFilter {
                    limit: 100,
                    ..Default::default()
                },
                T0
            )
            .await
            .unwrap()
            .is_empty());
    }

    /// A deferral of a client with a notification endpoint (DTR-26).
    async fn notifying(s: &Arc<dyn Store>, id: &str) {
        s.upsert_client(&client("svc")).await.unwrap();
        let mut d = new_deferral(id, "svc", T0);
        d.code_sealed = Some(format!("sealed-{id}"));
        d.notification_token_sealed = Some("sealed-token".into());
        d.callback_not_before = Some(T0 + 500);
        s.insert_deferral(&d).await.unwrap();
    }

    pub async fn resolution_enqueues_one_callback(s: Arc<dyn Store>) {
        // The job is created in the resolving transaction, once.
        notifying(&s, "dfr_cb").await;
        assert!(
            s.claim_callbacks(T0 + 10_000, 10, 1_000)
                .await
                .unwrap()
                .is_empty(),
            "nothing before a resolution"
        );
        assert!(s.approve("dfr_cb", "read", T0 + 100).await.unwrap());
        assert!(
            s.claim_callbacks(T0 + 200, 10, 1_000)
                .await
                .unwrap()
                .is_empty(),
            "not before callback_not_before (DTR-27)"
        );
        let jobs = s.claim_callbacks(T0 + 600, 10, 1_000).await.unwrap();
        assert_eq!(jobs.len(), 1);
        let j = &jobs[0];
        assert_eq!(j.deferral_id, "dfr_cb");
        assert_eq!(j.endpoint, "https://app.example/notify");
        assert_eq!(j.attempts, 1);
        assert_eq!(j.code_sealed.as_deref(), Some("sealed-dfr_cb"));
        assert_eq!(j.token_sealed.as_deref(), Some("sealed-token"));
        assert!(
            s.claim_callbacks(T0 + 700, 10, 1_000)
                .await
                .unwrap()
                .is_empty(),
            "leased"
        );
        // Lease expiry: a dead node's job comes back.
        let again = s.claim_callbacks(T0 + 2_000, 10, 1_000).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 2);
        s.finish_callback(
            "dfr_cb",
            &CallbackOutcome::Delivered { status: 204 },
            T0 + 2_100,
        )
        .await
        .unwrap();
        let st = s.callback_status("dfr_cb").await.unwrap().unwrap();
        assert_eq!(st.state, "delivered");
        assert_eq!(st.last_status, Some(204));
        // DTR-29: the sealed secrets are gone once the callback is done.
        let jobs = s.claim_callbacks(T0 + 100_000, 10, 1_000).await.unwrap();
        assert!(jobs.is_empty());
        // A denial after approval (consent staleness) enqueues nothing more.
        assert!(s.deny("dfr_cb", "stale", true, T0 + 3_000).await.unwrap());
        assert_eq!(
            s.callback_status("dfr_cb").await.unwrap().unwrap().state,
            "delivered"
        );
    }

    pub async fn retry_then_fail_and_suppression(s: Arc<dyn Store>) {
        notifying(&s, "dfr_r").await;
        assert!(s.deny("dfr_r", "no", false, T0 + 100).await.unwrap());
        let j = s.claim_callbacks(T0 + 600, 10, 60_000).await.unwrap();
        assert_eq!(j.len(), 1);
        let retry = CallbackOutcome::Retry {
            at: T0 + 5_000,
            status: Some(500),
            error: "HTTP 500".into(),
        };
        s.finish_callback("dfr_r", &retry, T0 + 700).await.unwrap();
        assert!(
            s.claim_callbacks(T0 + 4_000, 10, 60_000)
                .await
                .unwrap()
                .is_empty(),
            "not before the retry time"
        );
        assert_eq!(
            s.claim_callbacks(T0 + 5_000, 10, 60_000)
                .await
                .unwrap()
                .len(),
            1
        );
        let failed = CallbackOutcome::Failed {
            status: None,
            error: "timeout".into(),
        };
        s.finish_callback("dfr_r", &failed, T0 + 5_100)
            .await
            .unwrap();
        let st = s.callback_status("dfr_r").await.unwrap().unwrap();
        assert_eq!((st.state.as_str(), st.attempts), ("failed", 2));

        // Cancellation suppresses a job not started (DTR-32) ...
        notifying(&s, "dfr_c").await;
        s.approve("dfr_c", "read", T0 + 100).await.unwrap();
        assert!(s.cancel("hash-of-dfr_c", "svc", T0 + 200).await.unwrap());
        assert_eq!(
            s.callback_status("dfr_c").await.unwrap().unwrap().state,
            "suppressed"
        );
        assert!(s
            .claim_callbacks(T0 + 10_000, 10, 1_000)
            .await
            .unwrap()
            .is_empty());
        // ... and so does redemption.
        notifying(&s, "dfr_x").await;
        s.approve("dfr_x", "read", T0 + 100).await.unwrap();
        assert!(s.redeem("dfr_x", T0 + 200).await.unwrap());
        assert_eq!(
            s.callback_status("dfr_x").await.unwrap().unwrap().state,
            "suppressed"
        );
        // A deferral without a sealed code (no endpoint) never gets a job.
        s.insert_deferral(&new_deferral("dfr_plain", "svc", T0))
            .await
            .unwrap();
        s.approve("dfr_plain", "read", T0 + 100).await.unwrap();
        assert!(s.callback_status("dfr_plain").await.unwrap().is_none());
    }

    pub async fn prune_in_batches_deletes_everything_due(s: Arc<dyn Store>) {
        // More rows than one PostgreSQL prune batch (1000).
        for i in 0..2_100 {
            s.use_once(&format!("k{i}"), T0, T0 - 1).await.unwrap();
        }
        s.use_once("keep", T0 + 10, T0).await.unwrap();
        assert_eq!(s.prune_used(T0 + 1).await.unwrap(), 2_100);
        assert!(!s.use_once("keep", T0 + 20, T0 + 1).await.unwrap());
    }

    pub async fn users_keep_admin_disabled(s: Arc<dyn Store>) {
        let u = UserRecord {
            username: "alice".into(),
            password_hash: "h1".into(),
            enabled: true,
            admin_disabled: false,
            ..UserRecord::default()
        };
        s.upsert_user(&u).await.unwrap();
        assert!(s.set_user_admin_disabled("alice", true).await.unwrap());
        assert!(!s.set_user_admin_disabled("nobody", true).await.unwrap());
        s.upsert_user(&UserRecord {
            password_hash: "h2".into(),
            ..u.clone()
        })
        .await
        .unwrap();
        let got = s.get_user("alice").await.unwrap().unwrap();
        assert_eq!(got.password_hash, "h2");
        assert!(got.admin_disabled && !got.is_active());
        assert_eq!(s.list_users().await.unwrap().len(), 1);
        assert!(s.get_user("nobody").await.unwrap().is_none());
    }

    pub async fn sessions_end_once(s: Arc<dyn Store>) {
        for (id, user) in [("s1", "alice"), ("s2", "alice"), ("s3", "bob")] {
            s.insert_session(&SessionRecord {
                id_hash: id.into(),
                username: user.into(),
                created_at: T0,
                expires_at: T0 + LIFE,
                ended_at: None,
            })
            .await
            .unwrap();
        }
        assert!(s.session_by_hash("s1").await.unwrap().unwrap().is_live(T0));
        assert!(!s
            .session_by_hash("s1")
            .await
            .unwrap()
            .unwrap()
            .is_live(T0 + LIFE));
        assert!(s.end_session("s1", T0 + 1).await.unwrap());
        assert!(!s.end_session("s1", T0 + 2).await.unwrap());
        assert_eq!(
            s.session_by_hash("s1").await.unwrap().unwrap().ended_at,
            Some(T0 + 1)
        );
        assert_eq!(s.end_user_sessions("alice", T0 + 3).await.unwrap(), 1);
        assert!(s
            .session_by_hash("s3")
            .await
            .unwrap()
            .unwrap()
            .ended_at
            .is_none());
        assert!(s.session_by_hash("nope").await.unwrap().is_none());
    }

    pub async fn consents_keep_their_id_until_revoked(s: Arc<dyn Store>) {
        let c = s
            .grant_consent("alice", "web", "read", "c1", T0)
            .await
            .unwrap();
        assert_eq!((c.id.as_str(), c.scope.as_str()), ("c1", "read"));
        let c = s
            .grant_consent("alice", "web", "read write", "c2", T0 + 1)
            .await
            .unwrap();
        assert_eq!((c.id.as_str(), c.scope.as_str()), ("c1", "read write"));
        s.grant_consent("alice", "other", "read", "c3", T0)
            .await
            .unwrap();
        assert_eq!(s.list_consents("alice").await.unwrap().len(), 2);
        assert!(s.revoke_consent("alice", "web").await.unwrap());
        assert!(!s.revoke_consent("alice", "web").await.unwrap());
        assert!(s.get_consent("alice", "web").await.unwrap().is_none());
        let c = s
            .grant_consent("alice", "web", "read", "c4", T0 + 2)
            .await
            .unwrap();
        assert_eq!(c.id, "c4", "a consent given again is a new one");
    }

    pub async fn authorization_requests_are_single_use(s: Arc<dyn Store>) {
        let r = AuthorizationRequestRecord {
            id_hash: "r1".into(),
            client_id: "web".into(),
            request: serde_json::json!({"scope": "read"}),
            pushed: true,
            created_at: T0,
            expires_at: T0 + 60_000,
            used_at: None,
        };
        s.insert_authorization_request(&r).await.unwrap();
        assert_eq!(
            s.authorization_request("r1", T0).await.unwrap(),
            Some(r.clone())
        );
        assert!(
            s.authorization_request("r1", T0 + 60_000)
                .await
                .unwrap()
                .is_none(),
            "expired"
        );
        assert!(s.consume_authorization_request("r1", T0 + 1).await.unwrap());
        assert!(!s.consume_authorization_request("r1", T0 + 2).await.unwrap());
        assert!(s
            .authorization_request("r1", T0 + 3)
            .await
            .unwrap()
            .is_none());
    }

    pub async fn codes_are_single_use_and_replays_revoke_the_family(s: Arc<dyn Store>) {
        let c = AuthorizationCodeRecord {
            code_hash: "code1".into(),
            client_id: "web".into(),
            family_id: "fam1".into(),
            grant_data: serde_json::json!({"username": "alice"}),
            created_at: T0,
            expires_at: T0 + 60_000,
            used_at: None,
        };
        s.insert_authorization_code(&c).await.unwrap();
        assert!(matches!(
            s.use_authorization_code("nope", T0).await.unwrap(),
            Consumed::Invalid
        ));
        match s.use_authorization_code("code1", T0 + 1).await.unwrap() {
            Consumed::Fresh(r) => assert_eq!(r.grant_data, c.grant_data),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.use_authorization_code("code1", T0 + 2).await.unwrap(),
            Consumed::Replayed(_)
        ));
        // Family: tokens linked to it are revoked with it, once. Its user
        // must exist and be enabled for its tokens to be valid.
        s.upsert_user(&UserRecord {
            username: "alice".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            enabled: true,
            admin_disabled: false,
            ..UserRecord::default()
        })
        .await
        .unwrap();
        s.insert_family(&TokenFamilyRecord {
            family_id: "fam1".into(),
            client_id: "web".into(),
            username: "alice".into(),
            created_at: T0,
            revoked_at: None,
        })
        .await
        .unwrap();
        s.record_token(&IssuedToken {
            jti: "j1".into(),
            client_id: "web".into(),
            expires_at: T0 + LIFE,
            issued_at: T0,
            deferral_id: None,
            parents: vec![],
        })
        .await
        .unwrap();
        s.set_token_family("j1", "fam1").await.unwrap();
        assert!(!s.token_revoked("j1").await.unwrap());
        assert!(s.revoke_family("fam1", T0 + 3).await.unwrap());
        assert!(!s.revoke_family("fam1", T0 + 4).await.unwrap());
        assert!(s.token_revoked("j1").await.unwrap());
        assert_eq!(
            s.get_family("fam1").await.unwrap().unwrap().revoked_at,
            Some(T0 + 3)
        );
        // A family revoked before it was written is recorded revoked.
        assert!(s.revoke_family("fam2", T0).await.unwrap());
        assert!(s
            .get_family("fam2")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some());
        // An unused code past its expiry is invalid, not a replay.
        s.insert_authorization_code(&AuthorizationCodeRecord {
            code_hash: "code2".into(),
            ..c
        })
        .await
        .unwrap();
        assert!(matches!(
            s.use_authorization_code("code2", T0 + 60_000)
                .await
                .unwrap(),
            Consumed::Invalid
        ));
    }

    pub async fn refresh_tokens_rotate_once(s: Arc<dyn Store>) {
        s.insert_family(&TokenFamilyRecord {
            family_id: "f".into(),
            client_id: "web".into(),
            username: "alice".into(),
            created_at: T0,
            revoked_at: None,
        })
        .await
        .unwrap();
        let t = RefreshTokenRecord {
            token_hash: "rt1".into(),
            family_id: "f".into(),
            client_id: "web".into(),
            grant_data: serde_json::json!({"scope": "read"}),
            issued_at: T0,
            expires_at: T0 + LIFE,
            used_at: None,
        };
        s.insert_refresh_token(&t).await.unwrap();
        s.insert_refresh_token(&RefreshTokenRecord {
            token_hash: "rt2".into(),
            ..t.clone()
        })
        .await
        .unwrap();
        assert_eq!(s.refresh_token("rt1").await.unwrap(), Some(t.clone()));
        // Many concurrent uses: one winner, the rest see a replay.
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.use_refresh_token("rt1", T0 + 1).await.unwrap() })
            })
            .collect();
        let mut fresh = 0;
        for t in tasks {
            match t.await.unwrap() {
                Consumed::Fresh(_) => fresh += 1,
                Consumed::Replayed(_) => {}
                Consumed::Invalid => panic!("a used token is a replay"),
            }
        }
        assert_eq!(fresh, 1);
        // A revoked family's tokens are invalid; expired ones too.
        s.revoke_family("f", T0 + 2).await.unwrap();
        assert!(matches!(
            s.use_refresh_token("rt2", T0 + 3).await.unwrap(),
            Consumed::Invalid
        ));
        assert!(matches!(
            s.use_refresh_token("nope", T0).await.unwrap(),
            Consumed::Invalid
        ));
    }

    pub async fn prune_accounts_deletes_expired(s: Arc<dyn Store>) {
        s.insert_session(&SessionRecord {
            id_hash: "old".into(),
            username: "a".into(),
            created_at: T0,
            expires_at: T0 + 1,
            ended_at: None,
        })
        .await
        .unwrap();
        s.insert_session(&SessionRecord {
            id_hash: "new".into(),
            username: "a".into(),
            created_at: T0,
            expires_at: T0 + LIFE,
            ended_at: None,
        })
        .await
        .unwrap();
        assert_eq!(s.prune_accounts(T0 + 2).await.unwrap(), 1);
        assert!(s.session_by_hash("old").await.unwrap().is_none());
        assert!(s.session_by_hash("new").await.unwrap().is_some());
    }

    pub async fn console_sessions_end_at_logout_and_expiry(s: Arc<dyn Store>) {
        let session = |id: &str, expires_at: i64| ConsoleSession {
            id_hash: format!("hash-of-{id}"),
            admin_fingerprint: format!("fp-{id}"),
            username: None,
            created_at: T0,
            expires_at,
        };
        s.insert_console_session(&session("a", T0 + LIFE))
            .await
            .unwrap();
        s.insert_console_session(&session("b", T0 + 10))
            .await
            .unwrap();
        assert_eq!(
            s.console_session("hash-of-a", T0 + 1).await.unwrap(),
            Some(session("a", T0 + LIFE))
        );
        assert!(s.console_session("unknown", T0).await.unwrap().is_none());
        // Expiry is the store's answer too, whether or not it was pruned.
        assert!(s
            .console_session("hash-of-b", T0 + 9)
            .await
            .unwrap()
            .is_some());
        assert!(s
            .console_session("hash-of-b", T0 + 10)
            .await
            .unwrap()
            .is_none());
        // Sign-out ends a session once.
        assert!(s.delete_console_session("hash-of-a").await.unwrap());
        assert!(!s.delete_console_session("hash-of-a").await.unwrap());
        assert!(s
            .console_session("hash-of-a", T0 + 1)
            .await
            .unwrap()
            .is_none());
        // Pruning deletes only what ended before its time.
        s.insert_console_session(&session("c", T0 + LIFE))
            .await
            .unwrap();
        assert_eq!(s.prune_console_sessions(T0 + 11).await.unwrap(), 1);
        assert!(s
            .console_session("hash-of-c", T0 + 11)
            .await
            .unwrap()
            .is_some());
        assert_eq!(s.prune_console_sessions(T0 + 11).await.unwrap(), 0);
    }

    pub async fn users_keep_roles_groups_and_claims(s: Arc<dyn Store>) {
        let u = UserRecord {
            username: "carol".into(),
            password_hash: "h1".into(),
            enabled: true,
            roles: vec!["reviewer".into(), "admin".into()],
            groups: vec!["fraud".into(), "kyc".into()],
            name: Some("Carol Example".into()),
            email: Some("carol@example.com".into()),
            ..UserRecord::default()
        };
        s.upsert_user(&u).await.unwrap();
        assert_eq!(s.get_user("carol").await.unwrap().unwrap(), u);
        // A restart with another configuration replaces them; the admin
        // override stays.
        assert!(s.set_user_admin_disabled("carol", true).await.unwrap());
        let changed = UserRecord {
            roles: vec![],
            groups: vec!["kyc".into()],
            name: None,
            email: None,
            ..u.clone()
        };
        s.upsert_user(&changed).await.unwrap();
        let got = s.get_user("carol").await.unwrap().unwrap();
        assert!(got.roles.is_empty() && got.name.is_none() && got.email.is_none());
        assert_eq!(got.groups, vec!["kyc".to_owned()]);
        assert!(got.admin_disabled);
        assert_eq!(s.list_users().await.unwrap(), vec![got]);
    }

    pub async fn user_tokens_by_hash_and_revoked_once(s: Arc<dyn Store>) {
        let t = |id: &str, user: &str, at: i64| UserTokenRecord {
            id: id.into(),
            username: user.into(),
            token_hash: format!("hash-of-{id}"),
            created_at: at,
            revoked_at: None,
        };
        s.insert_user_token(&t("t1", "carol", T0)).await.unwrap();
        s.insert_user_token(&t("t2", "carol", T0 + 1))
            .await
            .unwrap();
        s.insert_user_token(&t("t3", "dave", T0)).await.unwrap();
        // The hash is unique: a second token with it is refused.
        assert!(s
            .insert_user_token(&UserTokenRecord {
                id: "t4".into(),
                ..t("t1", "dave", T0)
            })
            .await
            .is_err());
        assert_eq!(
            s.user_token_by_hash("hash-of-t1").await.unwrap(),
            Some(t("t1", "carol", T0))
        );
        assert!(s.user_token_by_hash("t1").await.unwrap().is_none());
        let ids = |v: Vec<UserTokenRecord>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
        assert_eq!(
            ids(s.list_user_tokens("carol").await.unwrap()),
            ["t1", "t2"]
        );
        assert!(s.list_user_tokens("nobody").await.unwrap().is_empty());

        // Revocation: only by its own user's name; a second one keeps the
        // first time.
        assert!(!s.revoke_user_token("dave", "t1", T0 + 5).await.unwrap());
        assert!(!s.revoke_user_token("carol", "nope", T0 + 5).await.unwrap());
        assert!(s.revoke_user_token("carol", "t1", T0 + 5).await.unwrap());
        assert!(s.revoke_user_token("carol", "t1", T0 + 9).await.unwrap());
        let got = s.user_token_by_hash("hash-of-t1").await.unwrap().unwrap();
        assert_eq!(got.revoked_at, Some(T0 + 5));
        assert!(s
            .user_token_by_hash("hash-of-t2")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none());
        // The hash stays out of Debug output.
        assert!(!format!("{got:?}").contains("hash-of-t1"));
    }

    pub async fn console_sessions_of_a_user(s: Arc<dyn Store>) {
        let session = |id: &str, user: Option<&str>| ConsoleSession {
            id_hash: format!("hash-of-{id}"),
            admin_fingerprint: if user.is_some() {
                String::new()
            } else {
                format!("fp-{id}")
            },
            username: user.map(str::to_owned),
            created_at: T0,
            expires_at: T0 + LIFE,
        };
        for (id, user) in [
            ("a", Some("carol")),
            ("b", Some("carol")),
            ("c", None),
            ("d", Some("dave")),
        ] {
            s.insert_console_session(&session(id, user)).await.unwrap();
        }
        assert_eq!(
            s.console_session("hash-of-a", T0).await.unwrap(),
            Some(session("a", Some("carol")))
        );
        assert_eq!(s.delete_user_console_sessions("carol").await.unwrap(), 2);
        assert_eq!(s.delete_user_console_sessions("carol").await.unwrap(), 0);
        assert!(s.console_session("hash-of-b", T0).await.unwrap().is_none());
        for id in ["c", "d"] {
            assert!(s
                .console_session(&format!("hash-of-{id}"), T0)
                .await
                .unwrap()
                .is_some());
        }
    }

    pub async fn authzen_tasks_claim_lease_and_settle(s: Arc<dyn Store>) {
        use dtr_server::store::AuthzenTask;
        let task = |id: &str, cb: &str, next: i64| AuthzenTask {
            deferral_id: id.into(),
            task_id: format!("arq_{id}"),
            status_endpoint: format!("https://ars.example/access/v1/requests/arq_{id}"),
            cancel_endpoint: None,
            callback_hash: cb.into(),
            evaluation: serde_json::json!({"batch": {"evaluations": []}, "indices": [1]}),
            state: "pending".into(),
            next_poll_at: next,
            polls: 0,
            expires_at: T0 + LIFE,
            created_at: T0,
        };
        s.insert_authzen_task(&task("dfr_a", "cb-a", T0 + 1_000))
            .await
            .unwrap();
        s.insert_authzen_task(&task("dfr_b", "cb-b", T0 + 5_000))
            .await
            .unwrap();
        // A second task for the same deferral, or the same secret, is refused.
        assert!(s
            .insert_authzen_task(&task("dfr_a", "cb-x", T0))
            .await
            .is_err());
        assert!(s
            .insert_authzen_task(&task("dfr_c", "cb-a", T0))
            .await
            .is_err());
        assert_eq!(
            s.authzen_task_by_callback("cb-b")
                .await
                .unwrap()
                .unwrap()
                .deferral_id,
            "dfr_b"
        );
        assert!(s.authzen_task_by_callback("cb-z").await.unwrap().is_none());
        let got = s.authzen_task("dfr_a").await.unwrap().unwrap();
        assert_eq!(got, task("dfr_a", "cb-a", T0 + 1_000));
        // Due: only a. Claimed, it is leased: a second claim gets nothing.
        let claimed = s.claim_authzen_tasks(T0 + 1_000, 10, 30_000).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].deferral_id, "dfr_a");
        assert!(s
            .claim_authzen_tasks(T0 + 2_000, 10, 30_000)
            .await
            .unwrap()
            .iter()
            .all(|t| t.deferral_id != "dfr_a"));
        s.update_authzen_task("dfr_a", "pending", T0 + 3_000, true)
            .await
            .unwrap();
        let a = s.authzen_task("dfr_a").await.unwrap().unwrap();
        assert_eq!((a.next_poll_at, a.polls), (T0 + 3_000, 1));
        // Cancel is claimable; done is final.
        s.update_authzen_task("dfr_a", "cancel", T0 + 3_000, false)
            .await
            .unwrap();
        let c = s.claim_authzen_tasks(T0 + 3_000, 10, 30_000).await.unwrap();
        assert!(c
            .iter()
            .any(|t| t.deferral_id == "dfr_a" && t.state == "cancel"));
        s.update_authzen_task("dfr_a", "done", T0 + 3_000, false)
            .await
            .unwrap();
        s.update_authzen_task("dfr_a", "pending", T0, false)
            .await
            .unwrap();
        assert_eq!(
            s.authzen_task("dfr_a").await.unwrap().unwrap().state,
            "done"
        );
        assert!(s
            .claim_authzen_tasks(T0 + LIFE, 10, 30_000)
            .await
            .unwrap()
            .iter()
            .all(|t| t.deferral_id != "dfr_a"));
        // Ending a pending deferral early: once, and only while alive.
        insert(&s, "dfr_e").await;
        assert!(s.end_deferral_now("dfr_e", T0 + 10).await.unwrap());
        assert!(!s.end_deferral_now("dfr_e", T0 + 10).await.unwrap());
        assert_eq!(
            s.deferral_by_id("dfr_e").await.unwrap().unwrap().expires_at,
            T0 + 10
        );
        // Pruning takes what ended before the cut.
        assert_eq!(s.prune_authzen_tasks(T0 + LIFE + 1).await.unwrap(), 2);
        assert!(s.authzen_task("dfr_b").await.unwrap().is_none());
    }

    pub async fn access_request_keys_once_per_client(s: Arc<dyn Store>) {
        use dtr_server::store::SubmissionKey;
        let key = |client: &str, k: &str, dfr: &str| SubmissionKey {
            client_id: client.into(),
            idempotency_key: k.into(),
            body_hash: format!("hash-{dfr}"),
            deferral_id: dfr.into(),
            task_sealed: format!("sealed-{dfr}"),
            created_at: T0,
            expires_at: T0 + LIFE,
        };
        assert!(s.submission_by_key("pep", "k1").await.unwrap().is_none());
        assert!(s
            .remember_submission(&key("pep", "k1", "arq_1"))
            .await
            .unwrap()
            .is_none());
        // The same key again: the first stands and is returned.
        let earlier = s
            .remember_submission(&key("pep", "k1", "arq_2"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(earlier, key("pep", "k1", "arq_1"));
        assert_eq!(
            s.submission_by_key("pep", "k1").await.unwrap().unwrap(),
            key("pep", "k1", "arq_1")
        );
        // Keys are per client.
        assert!(s
            .remember_submission(&key("pep2", "k1", "arq_3"))
            .await
            .unwrap()
            .is_none());
        // Pruned after their retention.
        assert_eq!(s.prune_authzen_tasks(T0 + LIFE + 1).await.unwrap(), 2);
        assert!(s.submission_by_key("pep", "k1").await.unwrap().is_none());
    }

    pub async fn approver_hooks_outbox(s: Arc<dyn Store>) {
        use dtr_server::store::NewHookJob;
        let job = |deferral: &str, hook: &str| NewHookJob {
            deferral_id: deferral.into(),
            webhook_id: hook.into(),
            url: format!("https://hooks.example/{hook}"),
            body: format!("{{\"deferral_id\":\"{deferral}\"}}"),
            created_at: T0,
            expires_at: T0 + LIFE,
        };
        s.enqueue_hooks(&[job("dfr_h", "w1"), job("dfr_h", "w2")])
            .await
            .unwrap();
        // Enqueueing again (a retried request, a replay) adds nothing.
        let mut again = job("dfr_h", "w1");
        again.body = "changed".into();
        s.enqueue_hooks(&[again]).await.unwrap();
        s.enqueue_hooks(&[]).await.unwrap();
        let st = s.hook_status("dfr_h").await.unwrap();
        assert_eq!(st.len(), 2);
        assert!(st.iter().all(|h| h.state == "pending" && h.attempts == 0));
        assert!(s.hook_status("dfr_none").await.unwrap().is_empty());

        assert!(
            s.claim_hooks(T0 - 1, 10, 60_000).await.unwrap().is_empty(),
            "not due yet"
        );
        let claimed = s.claim_hooks(T0, 10, 60_000).await.unwrap();
        assert_eq!(claimed.len(), 2);
        let w1 = claimed.iter().find(|j| j.webhook_id == "w1").unwrap();
        assert_eq!(
            w1.body, "{\"deferral_id\":\"dfr_h\"}",
            "the first body stays"
        );
        assert_eq!((w1.attempts, w1.expires_at), (1, T0 + LIFE));
        assert_eq!(w1.url, "https://hooks.example/w1");
        // Leased: nobody else takes them until the lease runs out.
        assert!(s
            .claim_hooks(T0 + 1_000, 10, 60_000)
            .await
            .unwrap()
            .is_empty());

        s.finish_hook(
            "dfr_h",
            "w1",
            &CallbackOutcome::Delivered { status: 204 },
            T0 + 10,
        )
        .await
        .unwrap();
        let retry = CallbackOutcome::Retry {
            at: T0 + 5_000,
            status: Some(500),
            error: "HTTP 500".into(),
        };
        s.finish_hook("dfr_h", "w2", &retry, T0 + 10).await.unwrap();
        assert!(s
            .claim_hooks(T0 + 4_000, 10, 60_000)
            .await
            .unwrap()
            .is_empty());
        let again = s.claim_hooks(T0 + 5_000, 10, 60_000).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].webhook_id.as_str(), again[0].attempts), ("w2", 2));
        // A node that died mid-delivery: its lease runs out, the row is due again.
        let redo = s
            .claim_hooks(T0 + 5_000 + 60_001, 10, 60_000)
            .await
            .unwrap();
        assert_eq!((redo.len(), redo[0].attempts), (1, 3));
        let failed = CallbackOutcome::Failed {
            status: None,
            error: "timeout".into(),
        };
        s.finish_hook("dfr_h", "w2", &failed, T0 + 70_000)
            .await
            .unwrap();
        // A finished row stays finished, whatever a late node reports.
        s.finish_hook("dfr_h", "w1", &retry, T0 + 70_000)
            .await
            .unwrap();
        let st = s.hook_status("dfr_h").await.unwrap();
        let got: Vec<_> = st
            .iter()
            .map(|h| {
                (
                    h.webhook_id.as_str(),
                    h.state.as_str(),
                    h.attempts,
                    h.last_status,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![("w1", "delivered", 1, Some(204)), ("w2", "failed", 3, None)]
        );
        assert!(s
            .claim_hooks(T0 + LIFE, 10, 60_000)
            .await
            .unwrap()
            .is_empty());
    }
}

/// One `#[tokio::test]` per suite body and backend.
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
    users_keep_roles_groups_and_claims,
    user_tokens_by_hash_and_revoked_once,
    console_sessions_of_a_user,
    transitions_follow_the_table,
    approvals_and_events,
    console_sessions_end_at_logout_and_expiry,
    approve_applies_once,
    deny_from_pending_and_only_explicitly_from_approved,
    redeem_applies_once,
    redeem_exactly_once_under_50_concurrent_callers,
    cancel_by_owner_only,
    record_poll_is_a_compare_and_set,
    record_poll_has_one_winner_under_concurrency,
    approve_due_and_expire_due,
    progress_and_interaction_only_while_pending,
    front_channel_proof_and_interaction_start_are_recorded_once,
    resolve_interaction_uses_the_handle_once,
    list_filters_and_orders_newest_first,
    second_handles_name_their_deferral,
    count_pending_by_client,
    clients_upsert_keeps_admin_disabled,
    tokens_revoke_and_prune,
    exchanged_tokens_die_with_their_parents,
    use_once_single_winner,
    signing_key_is_never_replaced,
    id_token_key_is_made_once_per_algorithm,
    signing_key_agrees_when_nodes_start_together,
    prune_deletes_only_finished_and_old,
    prune_in_batches_deletes_everything_due,
    resolution_enqueues_one_callback,
    retry_then_fail_and_suppression,
    users_keep_admin_disabled,
    sessions_end_once,
    consents_keep_their_id_until_revoked,
    authorization_requests_are_single_use,
    codes_are_single_use_and_replays_revoke_the_family,
    refresh_tokens_rotate_once,
    prune_accounts_deletes_expired,
    approver_hooks_outbox,
    authzen_tasks_claim_lease_and_settle,
    access_request_keys_once_per_client,
);

/// What only the PostgreSQL backend has: start-up against a shared server.
mod postgres_startup {
    use super::pg::TestDb;
    use dtr_server::config::DatabaseUrl;
    use dtr_server::store::postgres::PostgresStore;
    use dtr_server::store::StoreError;

    fn migration_count(db: &str) -> usize {
        let dir = format!("{}/migrations/{db}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".sql")
            })
            .count()
    }

    #[test]
    fn migration_folders_stay_in_step() {
        // migrations/README.md: number N means the same change in both.
        assert_eq!(migration_count("postgres"), migration_count("sqlite"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[cfg_attr(
        dtr_no_postgres,
        ignore = "needs PostgreSQL: set DTR_TEST_POSTGRES_URL"
    )]
    async fn nodes_starting_together_migrate_once() {
        let Some(db) =
            TestDb::create("postgres_startup::nodes_starting_together_migrate_once").await
        else {
            return;
        };
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let url = db.url.clone();
                tokio::spawn(async move { PostgresStore::open(&url, 2).await })
            })
            .collect();
        for o in opens {
            o.await.unwrap().unwrap();
        }
        let c = db.connect().await;
        let versions: Vec<i64> = c
            .query("SELECT version FROM schema_version ORDER BY version", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let expected: Vec<i64> = (1..=migration_count("postgres") as i64).collect();
        assert_eq!(versions, expected, "each migration applied exactly once");
        // Reopening applies nothing more.
        PostgresStore::open(&db.url, 1).await.unwrap();
        let n: i64 = c
            .query_one("SELECT COUNT(*) FROM schema_version", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, expected.len() as i64);
    }

    #[tokio::test]
    #[cfg_attr(
        dtr_no_postgres,
        ignore = "needs PostgreSQL: set DTR_TEST_POSTGRES_URL"
    )]
    async fn newer_schema_is_refused() {
        let Some(db) = TestDb::create("postgres_startup::newer_schema_is_refused").await else {
            return;
        };
        PostgresStore::open(&db.url, 1).await.unwrap();
        db.connect()
            .await
            .batch_execute("INSERT INTO schema_version (version) VALUES (999)")
            .await
            .unwrap();
        match PostgresStore::open(&db.url, 1).await {
            Err(StoreError::SchemaTooNew { found, supported }) => {
                assert_eq!(found, 999);
                assert_eq!(supported, migration_count("postgres") as i64);
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
        let msg = dtr_server::open_store(&DatabaseUrl::Postgres(db.url.clone()))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("`database`") && msg.contains("newer"), "{msg}");
    }

    #[tokio::test]
    async fn unreachable_database_names_the_key() {
        // Port 1 on loopback: nothing listens there, the connection is refused.
        let url = "postgres://dtr:secret-password@127.0.0.1:1/dtr";
        let msg = dtr_server::open_store(&DatabaseUrl::Postgres(url.into()))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("config key `database`"), "{msg}");
        assert!(
            msg.contains("cannot connect to PostgreSQL at dtr@127.0.0.1:1/dtr"),
            "{msg}"
        );
        assert!(
            !msg.contains("secret-password"),
            "never echo the password: {msg}"
        );
    }
}
