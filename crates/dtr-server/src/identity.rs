//! Who calls the admin API: the admin token, or a user's personal API
//! token, each turned into the [`Actor`] that routing and the audit trail
//! know.
//!
//! A personal token is [`PERSONAL_TOKEN_PREFIX`] and 256 random bits,
//! shown once at creation; the store keeps only its SHA-256, which is also
//! the lookup key. Every use reads the token and its user from the store,
//! so a revocation, a disabled user or a user no longer configured is
//! refused at once on every node, and the roles and groups used are the
//! current ones. Wrong bearer values of either kind spend the source
//! address's failure budget, like wrong admin tokens always did.

use crate::approvers::{Actor, UserActor};
use crate::state::AppState;
use crate::store::{StoreError, UserRecord, UserTokenRecord};
use crate::throttle::{Attempt, Outcome, Refused};
use dtr_proto::secret::{ct_eq, random_token, sha256_b64, PersonalToken, PERSONAL_TOKEN_PREFIX};
use sha2::{Digest, Sha256};

/// The actor of a stored user: their name, roles and groups.
pub fn user_actor(u: &UserRecord) -> Actor {
    Actor::User(UserActor {
        username: u.username.clone(),
        roles: u.roles.clone(),
        groups: u.groups.clone(),
    })
}

/// Why a bearer value could not be checked.
#[derive(Debug)]
pub enum BearerFault {
    /// Over the source address's budget of failures.
    Refused(Refused),
    /// The store failed (nothing was decided, no budget spent).
    Store(StoreError),
}

/// Who `presented` authenticates at the admin API: the admin token
/// (compared as SHA-256 in constant time) or a live personal token of an
/// active user; `None` for anything else, which spends a failure of the
/// source address's budget. Over budget the value is not looked at.
pub async fn bearer_actor(state: &AppState, presented: &str) -> Result<Option<Actor>, BearerFault> {
    let held = state
        .throttle
        .check(Attempt::AdminToken, crate::throttle::source())
        .map_err(BearerFault::Refused)?;
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    if let Some(expected) = state.admin_token_sha256 {
        if ct_eq(&digest, &expected) {
            held.record(Outcome::Success);
            return Ok(Some(Actor::AdminToken));
        }
    }
    if presented.starts_with(PERSONAL_TOKEN_PREFIX) {
        match personal_token_user(state, presented).await {
            Ok(Some(u)) => {
                held.record(Outcome::Success);
                return Ok(Some(user_actor(&u)));
            }
            Ok(None) => {}
            Err(e) => {
                held.record(Outcome::Undecided);
                return Err(BearerFault::Store(e));
            }
        }
    }
    tracing::info!("admin API bearer token refused");
    held.record(Outcome::Failure);
    Ok(None)
}

/// The active user a personal token authenticates, if it is known and
/// not revoked.
async fn personal_token_user(
    state: &AppState,
    presented: &str,
) -> Result<Option<UserRecord>, StoreError> {
    let hash = sha256_b64(presented);
    let Some(t) = state.store.user_token_by_hash(&hash).await? else {
        return Ok(None);
    };
    if !ct_eq(t.token_hash.as_bytes(), hash.as_bytes()) || t.revoked_at.is_some() {
        return Ok(None);
    }
    Ok(state
        .store
        .get_user(&t.username)
        .await?
        .filter(UserRecord::is_active))
}

/// Creates a personal token for `username` (who must exist): the stored
/// record (hash only) and the token itself, to be shown once.
pub async fn create_token(
    state: &AppState,
    username: &str,
) -> Result<(UserTokenRecord, PersonalToken), StoreError> {
    let token = PersonalToken::generate();
    let record = UserTokenRecord {
        id: random_token(12),
        username: username.to_owned(),
        token_hash: token.hash(),
        created_at: state.clock.now_ms(),
        revoked_at: None,
    };
    state.store.insert_user_token(&record).await?;
    Ok((record, token))
}
