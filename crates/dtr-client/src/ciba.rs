//! OpenID CIBA Core 1.0 from the client side: the backchannel
//! authentication request (section 7.1), collecting its result with the
//! CIBA grant (section 10.1) through the [`crate::Poller`] (the same
//! pacing, `slow_down` and expiry rules as a deferral: on a dtr server the
//! `auth_req_id` is a handle of a deferral), and the bridge that continues
//! a deferral of any grant as a CIBA request
//! (`login_hint_token=urn:dtr:deferral:<deferral_code>`). Ping and push
//! arrive at the [`crate::CallbackReceiver`].

use crate::client::{oauth_or_unexpected, Client};
use crate::deferral::{Deferral, TokenResult};
use crate::error::Error;
use crate::http::unexpected;
use crate::poller::PollTransport;
use dtr_proto::secret::{DeferralCode, NotificationToken};
use dtr_proto::ErrorCode;
use serde::Deserialize;
use std::future::Future;

/// The CIBA grant type (section 10.1).
pub const GRANT_TYPE_CIBA: &str = "urn:openid:params:grant-type:ciba";
/// The metadata member of the endpoint (section 4).
pub const BACKCHANNEL_ENDPOINT: &str = "backchannel_authentication_endpoint";

/// A backchannel authentication request (section 7.1). Exactly one of the
/// hints must be set.
#[derive(Clone, Debug, Default)]
pub struct BackchannelRequest {
    /// Scope; `openid` is added when missing.
    pub scope: Option<String>,
    /// The user (on dtr: a username).
    pub login_hint: Option<String>,
    /// A token naming the user, or `urn:dtr:deferral:<code>` (the bridge).
    pub login_hint_token: Option<String>,
    /// An ID token the server issued to this client.
    pub id_token_hint: Option<String>,
    /// Shown to the user on both devices.
    pub binding_message: Option<String>,
    /// The user's secret code, when the server wants one.
    pub user_code: Option<String>,
    /// A shorter lifetime (seconds).
    pub requested_expiry: Option<u64>,
    /// The bearer of ping and push deliveries.
    pub notification_token: Option<NotificationToken>,
}

/// The authentication request response (section 7.3).
#[derive(Clone, Deserialize)]
pub struct BackchannelAuthentication {
    /// The handle to collect the result with.
    pub auth_req_id: String,
    /// Seconds it lives.
    pub expires_in: u64,
    /// Seconds between polls (absent for push clients; 5 by default).
    #[serde(default = "default_interval")]
    pub interval: u64,
}

fn default_interval() -> u64 {
    5
}

impl std::fmt::Debug for BackchannelAuthentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackchannelAuthentication")
            .field("auth_req_id", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish()
    }
}

/// The `login_hint_token` that continues deferral `code` as CIBA.
pub fn bridge_hint(code: &DeferralCode) -> String {
    format!("urn:dtr:deferral:{}", code.secret())
}

impl Client {
    /// The backchannel authentication endpoint from the metadata.
    pub fn backchannel_endpoint(&self) -> Option<&str> {
        self.metadata()
            .other
            .get(BACKCHANNEL_ENDPOINT)
            .and_then(|v| v.as_str())
    }

    /// Sends a backchannel authentication request with this client's
    /// authentication (and a DPoP proof with [`Client::with_dpop`]: the
    /// `auth_req_id` is then bound to the key). An error answer is
    /// [`Error::OAuth`].
    pub async fn backchannel_authentication(
        &self,
        req: &BackchannelRequest,
    ) -> Result<BackchannelAuthentication, Error> {
        let endpoint = self
            .backchannel_endpoint()
            .ok_or(Error::MissingEndpoint(BACKCHANNEL_ENDPOINT))?
            .to_owned();
        let scope = match req.scope.as_deref() {
            Some(s) if s.split(' ').any(|x| x == "openid") => s.to_owned(),
            Some(s) => format!("openid {s}"),
            None => "openid".to_owned(),
        };
        let expiry = req.requested_expiry.map(|e| e.to_string());
        let mut params: Vec<(&str, &str)> = vec![("scope", &scope)];
        let optional = [
            ("login_hint", req.login_hint.as_deref()),
            ("login_hint_token", req.login_hint_token.as_deref()),
            ("id_token_hint", req.id_token_hint.as_deref()),
            ("binding_message", req.binding_message.as_deref()),
            ("user_code", req.user_code.as_deref()),
            ("requested_expiry", expiry.as_deref()),
            (
                "client_notification_token",
                req.notification_token.as_ref().map(|t| t.secret()),
            ),
        ];
        params.extend(optional.iter().filter_map(|(k, v)| v.map(|v| (*k, v))));
        let answer = self.post_form(&endpoint, &params, true).await?;
        if answer.status != 200 {
            return Err(oauth_or_unexpected(answer.status, &answer.body));
        }
        serde_json::from_slice(&answer.body).map_err(|_| unexpected(answer.status, &answer.body))
    }

    /// Continues deferral `d` as a CIBA request (the bridge): the answer's
    /// `auth_req_id` collects the same decision, once.
    pub async fn bridge_to_ciba(
        &self,
        d: &Deferral,
        notification_token: Option<NotificationToken>,
    ) -> Result<BackchannelAuthentication, Error> {
        self.check_binding(d.dpop_jkt.as_deref())?;
        self.backchannel_authentication(&BackchannelRequest {
            login_hint_token: Some(bridge_hint(&d.code)),
            notification_token,
            ..Default::default()
        })
        .await
    }

    /// One token request of the CIBA grant (section 10.1).
    pub async fn ciba_token(&self, auth_req_id: &DeferralCode) -> Result<TokenResult, Error> {
        self.token_request(&[
            ("grant_type", GRANT_TYPE_CIBA),
            ("auth_req_id", auth_req_id.secret()),
        ])
        .await
    }
}

impl BackchannelAuthentication {
    /// The request as a [`Deferral`] the [`crate::Poller`] can wait for
    /// through [`Ciba`]: its handle, lifetime and interval, counted from
    /// now; bound to `dpop_jkt` when the request carried a proof.
    pub fn as_deferral(&self, client: &Client) -> Deferral {
        Deferral {
            code: DeferralCode::new(self.auth_req_id.clone()),
            expires_in: self.expires_in,
            interval: self.interval,
            interaction_uri: None,
            description: None,
            received_at_unix_ms: crate::clock::now_unix_ms(),
            issuer: client.metadata().issuer.clone(),
            client_id: client.auth().client_id().to_owned(),
            error: ErrorCode::AuthorizationPending,
            dpop_jkt: client.dpop_key().map(|k| k.thumbprint().to_owned()),
        }
    }
}

/// A [`PollTransport`] that collects with the CIBA grant (section 10.1)
/// instead of the deferred grant: the poller's pacing applies unchanged
/// (section 11's `authorization_pending`, `slow_down`, `expired_token`).
#[derive(Clone, Copy, Debug)]
pub struct Ciba<'a>(pub &'a Client);

impl PollTransport for Ciba<'_> {
    fn poll_once(
        &self,
        code: &DeferralCode,
    ) -> impl Future<Output = Result<TokenResult, Error>> + Send {
        self.0.ciba_token(code)
    }

    fn poll_bound(
        &self,
        code: &DeferralCode,
        dpop_jkt: Option<&str>,
    ) -> impl Future<Output = Result<TokenResult, Error>> + Send {
        let checked = self.0.check_binding(dpop_jkt);
        let client = self.0;
        let code = code.clone();
        async move {
            checked?;
            client.ciba_token(&code).await
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn response_parses_with_default_interval_and_redacted_debug() {
        let a: BackchannelAuthentication =
            serde_json::from_str(r#"{"auth_req_id":"abc","expires_in":120}"#).unwrap();
        assert_eq!(a.interval, 5);
        assert!(!format!("{a:?}").contains("abc"));
        assert_eq!(
            bridge_hint(&DeferralCode::new("xyz")),
            "urn:dtr:deferral:xyz"
        );
    }
}
