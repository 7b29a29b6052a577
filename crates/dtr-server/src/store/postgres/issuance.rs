//! [`IssuanceStore`] on PostgreSQL: one transaction. The redemption's
//! conditional update takes the row lock, so of two nodes redeeming the
//! same deferral the second waits and then finds it no longer approved.

use super::deferrals::{transitioned_from_row, SlotValues};
use super::*;
use crate::store::issuance::{Issuance, IssuanceStore, Recorded};
use crate::store::transitions::{self, Dialect, Target};

#[async_trait]
impl IssuanceStore for PostgresStore {
    async fn record_issuance(
        &self,
        redeem: Option<&TransitionWrite>,
        i: &Issuance,
        now: i64,
    ) -> StoreResult<Recorded> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        let mut redeemed = None;
        if let Some(w) = redeem {
            // The statement applies the callback effect itself.
            let stmt = transitions::update(
                w.transition,
                Dialect::Postgres,
                Target::One { handle: false },
            );
            let values = SlotValues::of(w, now);
            let st = tx.prepare_cached(&stmt.sql).await.map_err(db_err)?;
            let row = tx
                .query_opt(&st, &values.params(&stmt.slots))
                .await
                .map_err(db_err)?;
            let Some(row) = row else {
                return Ok(Recorded::NotRedeemed);
            };
            redeemed = Some(transitioned_from_row(&row)?);
        }
        if let Some(f) = &i.family {
            tx.execute(
                "INSERT INTO token_families (family_id, client_id, username, created_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (family_id) DO NOTHING",
                &[&f.family_id, &f.client_id, &f.username, &f.created_at, &f.revoked_at],
            )
            .await
            .map_err(db_err)?;
            let row = tx
                .query_one(
                    "SELECT revoked_at FROM token_families WHERE family_id = $1",
                    &[&f.family_id],
                )
                .await
                .map_err(db_err)?;
            let revoked: Option<i64> = row.try_get(0).map_err(db_err)?;
            if revoked.is_some() {
                // Dropping the transaction rolls the redemption back.
                return Ok(Recorded::FamilyRevoked);
            }
        }
        let t = &i.token;
        for parent in &t.parents {
            tx.execute(
                "INSERT INTO token_parents (jti, parent_jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&t.jti, parent, &t.expires_at],
            )
            .await
            .map_err(db_err)?;
        }
        let family_id = i.family.as_ref().map(|f| f.family_id.clone());
        tx.execute(
            "INSERT INTO access_tokens (jti, client_id, issued_at, expires_at, deferral_id, family_id) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&t.jti, &t.client_id, &t.issued_at, &t.expires_at, &t.deferral_id, &family_id],
        )
        .await
        .map_err(db_err)?;
        if let Some(r) = &i.refresh {
            tx.execute(
                "INSERT INTO refresh_tokens (token_hash, family_id, client_id, grant_data, issued_at, expires_at, used_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&r.token_hash, &r.family_id, &r.client_id, &r.grant_data, &r.issued_at, &r.expires_at, &r.used_at],
            )
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(Recorded::Written(redeemed))
    }
}
