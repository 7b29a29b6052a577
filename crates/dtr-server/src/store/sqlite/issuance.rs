//! [`IssuanceStore`] on SQLite: one transaction on the writer.

use super::deferrals::{apply_callback_effect, slot_values, transitioned_from_row};
use super::*;
use crate::store::issuance::{Issuance, IssuanceStore, Recorded};
use crate::store::transitions::{self, Dialect, Target};
use rusqlite::params_from_iter;

#[async_trait]
impl IssuanceStore for SqliteStore {
    async fn record_issuance(
        &self,
        redeem: Option<&TransitionWrite>,
        issuance: &Issuance,
        now: i64,
    ) -> StoreResult<Recorded> {
        let i = issuance.clone();
        let grant_data = i
            .refresh
            .as_ref()
            .map(|r| to_json(&r.grant_data))
            .transpose()?;
        let redeem = redeem.map(|w| {
            let stmt =
                transitions::update(w.transition, Dialect::Sqlite, Target::One { handle: false });
            let values = slot_values(&stmt.slots, w, now);
            (stmt.sql, values, w.transition.rule().callback)
        });
        self.with_hot(move |db| {
            let tx = db.transaction().map_err(db_err)?;
            let mut redeemed = None;
            if let Some((sql, values, effect)) = redeem {
                let done = tx
                    .prepare_cached(&sql)
                    .and_then(|mut st| {
                        st.query_row(params_from_iter(values.iter()), transitioned_from_row)
                            .optional()
                    })
                    .map_err(db_err)?;
                let Some(done) = done else {
                    return Ok(Recorded::NotRedeemed);
                };
                apply_callback_effect(&tx, effect, &done.id, now)?;
                redeemed = Some(done);
            }
            if let Some(f) = &i.family {
                tx.prepare_cached(
                    "INSERT INTO token_families (family_id, client_id, username, created_at, revoked_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (family_id) DO NOTHING",
                )
                .and_then(|mut st| {
                    st.execute(params![f.family_id, f.client_id, f.username, f.created_at, f.revoked_at])
                })
                .map_err(db_err)?;
                let revoked: Option<i64> = tx
                    .prepare_cached("SELECT revoked_at FROM token_families WHERE family_id = ?1")
                    .and_then(|mut st| st.query_row([&f.family_id], |r| r.get(0)))
                    .map_err(db_err)?;
                if revoked.is_some() {
                    // Dropping the transaction rolls the redemption back.
                    return Ok(Recorded::FamilyRevoked);
                }
            }
            let t = &i.token;
            for parent in &t.parents {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO token_parents (jti, parent_jti, expires_at) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut st| st.execute(params![t.jti, parent, t.expires_at]))
                .map_err(db_err)?;
            }
            tx.prepare_cached(
                "INSERT INTO access_tokens (jti, client_id, issued_at, expires_at, deferral_id, family_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    t.jti,
                    t.client_id,
                    t.issued_at,
                    t.expires_at,
                    t.deferral_id,
                    i.family.as_ref().map(|f| &f.family_id)
                ])
            })
            .map_err(db_err)?;
            if let (Some(r), Some(data)) = (&i.refresh, &grant_data) {
                tx.prepare_cached(
                    "INSERT INTO refresh_tokens (token_hash, family_id, client_id, grant_data, issued_at, expires_at, used_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .and_then(|mut st| {
                    st.execute(params![r.token_hash, r.family_id, r.client_id, data, r.issued_at, r.expires_at, r.used_at])
                })
                .map_err(db_err)?;
            }
            tx.commit().map_err(db_err)?;
            Ok(Recorded::Written(redeemed))
        })
        .await
    }
}
