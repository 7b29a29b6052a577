//! The client credentials grant (OAuth 2.1 section 4.2), deferrable like
//! every grant: the client acts on its own behalf, so it is the subject.

use super::{execute, GrantOutcome, GrantRequest, StoredGrant};
use crate::error::Error;
use crate::state::AppState;
use crate::store::ClientRecord;
use dtr_proto::scope::Scope;
use dtr_proto::token::DeferralOptIn;
use dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS;

/// Answers `grant_type=client_credentials` (the shared checks, public
/// clients' exclusion included, ran in [`super::pipeline`]).
pub async fn token(
    state: &AppState,
    client: &ClientRecord,
    scope: Option<Scope>,
    authorization_details: Option<serde_json::Value>,
    opt_in: DeferralOptIn,
    dpop_jkt: Option<String>,
) -> Result<GrantOutcome, Error> {
    let request = GrantRequest {
        client,
        grant_type: GRANT_TYPE_CLIENT_CREDENTIALS,
        scope: super::scope_within_client(client, scope)?,
        authorization_details,
        subject: client.client_id.clone(),
        opt_in,
        dpop_jkt,
        grant: StoredGrant::Client,
        not_after: None,
    };
    let outcome = request.plan(state).await?;
    execute(state, request, outcome).await
}
