//! The client credentials grant (OAuth 2.1 section 4.2), deferrable like
//! every grant: the client acts on its own behalf, so it is the subject.

use super::{deferred_response, plan, Outcome};
use crate::deferrals::{self, DeferRequest};
use crate::http::error::json_no_store;
use crate::state::AppState;
use crate::store::ClientRecord;
use crate::tokens::{self, Grant};
use axum::http::StatusCode;
use axum::response::Response;
use dtr_proto::scope::Scope;
use dtr_proto::token::DeferralOptIn;
use dtr_proto::{ErrorCode, OAuthError, GRANT_TYPE_CLIENT_CREDENTIALS};

/// Answers `grant_type=client_credentials`.
pub async fn token(
    state: &AppState,
    client: &ClientRecord,
    scope: Option<Scope>,
    authorization_details: Option<serde_json::Value>,
    opt_in: DeferralOptIn,
    dpop_jkt: Option<String>,
) -> Result<Response, OAuthError> {
    super::check_client(client, GRANT_TYPE_CLIENT_CREDENTIALS)?;
    // A public client cannot keep a secret, so it cannot act on its own
    // behalf (OAuth 2.1 section 4.2).
    if client.auth_method == "none" {
        return Err(OAuthError::with_description(
            ErrorCode::UnauthorizedClient,
            "client is not allowed to use the client_credentials grant",
        ));
    }
    let scope = super::scope_within_client(client, scope)?;
    let outcome = plan(
        state,
        client,
        GRANT_TYPE_CLIENT_CREDENTIALS,
        &scope,
        authorization_details.as_ref(),
        &opt_in,
        dpop_jkt.is_some(),
    )?;
    match outcome {
        Outcome::Issue => {
            let grant = Grant {
                client_id: client.client_id.clone(),
                subject: client.client_id.clone(),
                scope: scope.to_string(),
                authorization_details,
                deferral_id: None,
                dpop_jkt,
            };
            let token = tokens::issue(state, &grant).await?;
            Ok(json_no_store(StatusCode::OK, &token))
        }
        Outcome::Defer(action) => {
            let deferred = deferrals::create(
                state,
                DeferRequest {
                    client_id: client.client_id.clone(),
                    grant_type: GRANT_TYPE_CLIENT_CREDENTIALS.into(),
                    scope,
                    authorization_details,
                    subject: client.client_id.clone(),
                    action,
                    opt_in,
                    dpop_jkt,
                },
            )
            .await?;
            Ok(deferred_response(&deferred))
        }
    }
}
