//! The token endpoint's pipeline (OAuth 2.1 section 3.2): the checks every
//! grant needs run here once, in order, then the grant's own module runs
//! and returns a [`GrantOutcome`], which the HTTP layer renders. A new
//! grant is one module and one arm of [`answer`]; it cannot forget a
//! shared check because it never runs them itself.
//!
//! Order (DTR-16 for polls): the client is authenticated before this
//! (by the HTTP layer), then
//! 1. the DPoP requirement of the client (RFC 9449 section 5.2), for
//!    every request, polls included;
//! 2. a poll goes to the deferral lifecycle (DTR-15..23);
//! 3. the client is active and may use the grant (RFC 6749 section 5.2
//!    `unauthorized_client`), and a public client only what a public
//!    client may (OAuth 2.1 section 4.2: no client credentials);
//! 4. the grant: its own checks, the scope within the client's, the
//!    policy outcome with the deferral gates ([`super::plan`]), and the
//!    consumption of its single-use secret last.

use super::GrantOutcome;
use crate::error::Error;
use crate::state::AppState;
use crate::store::ClientRecord;
use dtr_proto::token::TokenRequest;
use dtr_proto::{ErrorCode, OAuthError};

/// Answers an authenticated client's token request. `dpop_jkt` is the
/// thumbprint of the request's valid DPoP proof, if it sent one.
pub async fn answer(
    state: &AppState,
    client: &ClientRecord,
    request: TokenRequest,
    dpop_jkt: Option<String>,
) -> Result<GrantOutcome, Error> {
    super::check_binding_required(client, dpop_jkt.as_deref())?;
    let grant_type = match &request {
        TokenRequest::Poll {
            deferral_code,
            code_verifier,
            redirect_uri,
        } => {
            let pkce = super::deferred::PkceProof {
                code_verifier: code_verifier.as_ref(),
                redirect_uri: redirect_uri.as_deref(),
            };
            let token = super::deferred::poll(
                state,
                &client.client_id,
                client.is_active(),
                deferral_code,
                dpop_jkt.as_deref(),
                &pkce,
            )
            .await?;
            return Ok(GrantOutcome::Issued(token));
        }
        TokenRequest::ClientCredentials { .. } => dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS,
        TokenRequest::AuthorizationCode { .. } => dtr_proto::GRANT_TYPE_AUTHORIZATION_CODE,
        TokenRequest::RefreshToken { .. } => dtr_proto::GRANT_TYPE_REFRESH_TOKEN,
        TokenRequest::TokenExchange { .. } => dtr_proto::GRANT_TYPE_TOKEN_EXCHANGE,
        TokenRequest::DeviceCode { .. } => dtr_proto::GRANT_TYPE_DEVICE_CODE,
        TokenRequest::Ciba { .. } => dtr_proto::GRANT_TYPE_CIBA,
    };
    check_client(client, grant_type)?;
    match request {
        TokenRequest::Poll { .. } => unreachable!("answered above"),
        TokenRequest::ClientCredentials {
            scope,
            authorization_details,
            opt_in,
        } => {
            super::client_credentials::token(
                state,
                client,
                scope,
                authorization_details,
                opt_in,
                dpop_jkt,
            )
            .await
        }
        TokenRequest::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
            opt_in,
        } => {
            let x = super::authorization_code::CodeExchange {
                code,
                redirect_uri,
                code_verifier,
                opt_in,
                dpop_jkt,
            };
            super::authorization_code::exchange(state, client, x).await
        }
        TokenRequest::RefreshToken {
            refresh_token,
            scope,
            opt_in,
        } => super::refresh::refresh(state, client, &refresh_token, scope, opt_in, dpop_jkt).await,
        TokenRequest::TokenExchange { exchange, opt_in } => {
            super::token_exchange::exchange(state, client, exchange, opt_in, dpop_jkt).await
        }
        TokenRequest::DeviceCode {
            device_code,
            opt_in,
        } => super::device::token(state, client, &device_code, opt_in, dpop_jkt).await,
        TokenRequest::Ciba {
            auth_req_id,
            opt_in,
        } => super::ciba::token(state, client, &auth_req_id, opt_in, dpop_jkt).await,
    }
}

/// Whether the client may run `grant_type` at all: it is active, the grant
/// is among its grant types, and a public client never acts on its own
/// behalf (it cannot keep the secret that would prove it, OAuth 2.1
/// section 4.2).
pub fn check_client(client: &ClientRecord, grant_type: &str) -> Result<(), OAuthError> {
    if !client.is_active() {
        return Err(OAuthError::with_description(
            ErrorCode::InvalidClient,
            "client is disabled",
        ));
    }
    let public_may = grant_type != dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS;
    if !client.grant_types.iter().any(|g| g == grant_type)
        || (client.auth_method == "none" && !public_may)
    {
        return Err(OAuthError::with_description(
            ErrorCode::UnauthorizedClient,
            format!("client is not allowed to use the {grant_type} grant"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(auth_method: &str, grant_types: &[&str]) -> ClientRecord {
        ClientRecord {
            client_id: "c".into(),
            secret_hash: None,
            auth_method: auth_method.into(),
            grant_types: grant_types.iter().map(|g| g.to_string()).collect(),
            scope: "read".into(),
            redirect_uris: vec![],
            jwks: None,
            notification_endpoint: None,
            enabled: true,
            admin_disabled: false,
            dpop_bound_access_tokens: false,
            registration_token_hash: None,
            jwks_uri: None,
            metadata: None,
            require_par: false,
            deferred_authorization_endpoint: false,
            require_signed_request_object: false,
            owner: None,
        }
    }

    #[test]
    fn shared_client_checks() {
        let cc = dtr_proto::GRANT_TYPE_CLIENT_CREDENTIALS;
        let code = dtr_proto::GRANT_TYPE_AUTHORIZATION_CODE;
        assert!(check_client(&client("client_secret_basic", &[cc]), cc).is_ok());
        // Not among its grant types.
        let e = check_client(&client("client_secret_basic", &[code]), cc).unwrap_err();
        assert_eq!(e.error, ErrorCode::UnauthorizedClient);
        // A public client never uses client credentials, even if listed.
        let e = check_client(&client("none", &[cc]), cc).unwrap_err();
        assert_eq!(e.error, ErrorCode::UnauthorizedClient);
        assert!(check_client(&client("none", &[code]), code).is_ok());
        // A disabled client is refused first.
        let mut off = client("client_secret_basic", &[cc]);
        off.admin_disabled = true;
        assert_eq!(
            check_client(&off, cc).unwrap_err().error,
            ErrorCode::InvalidClient
        );
    }
}
