//! Recording an issued token with everything that makes it valid, in one
//! transaction: the exactly-once gate of a deferral's redemption (DTR-21),
//! the token family, the access token with its parents and family link,
//! and the rotated refresh token. Either all of it is written or none:
//! a failure anywhere leaves an approved deferral approved, so the next
//! poll collects it, and never a token without its family or links.

use super::{
    IssuedToken, RefreshTokenRecord, StoreResult, TokenFamilyRecord, TransitionWrite, Transitioned,
};
use async_trait::async_trait;

/// What one issuance writes.
#[derive(Clone, Debug)]
pub struct Issuance {
    /// The access token.
    pub token: IssuedToken,
    /// Its token family (user grants, RFC 9700 section 4.14.2): created
    /// if new, and the issuance refused if it was revoked meanwhile.
    pub family: Option<TokenFamilyRecord>,
    /// The refresh token issued with it.
    pub refresh: Option<RefreshTokenRecord>,
}

/// How recording an issuance ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Written; with the redemption it passed, if it redeemed a deferral.
    Written(Option<Transitioned>),
    /// The redemption did not apply (another poll redeemed first, or the
    /// deferral moved on): nothing was written.
    NotRedeemed,
    /// The token family was revoked meanwhile (a replayed code): nothing
    /// was written.
    FamilyRevoked,
}

/// Issuance, atomic.
#[async_trait]
pub trait IssuanceStore: Send + Sync {
    /// Writes `issuance`, after applying `redeem` (a `redeem` transition of
    /// the lifecycle table, with its callback effect) when given, all in
    /// one transaction.
    async fn record_issuance(
        &self,
        redeem: Option<&TransitionWrite>,
        issuance: &Issuance,
        now: i64,
    ) -> StoreResult<Recorded>;
}
