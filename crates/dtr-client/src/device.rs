//! The device authorization grant (RFC 8628) as an originating grant: the
//! device authorization request (section 3.1) and the device access token
//! request (section 3.4), both optionally with the DTR opt-in.
//!
//! `completion_mode=deferred` on the device authorization request is a
//! hint (DTR-4); when it was sent, the token request must carry it too
//! (DTR-5), which [`Client::device_token`] does when asked. A server that
//! knows nothing of DTR ignores the parameter (RFC 6749 section 3.2:
//! unrecognised parameters are ignored) and the grant runs as usual.

use crate::client::{oauth_or_unexpected, Client};
use crate::deferral::TokenResult;
use crate::error::Error;
use crate::http::unexpected;
use serde::Deserialize;
use std::fmt;

/// `grant_type` of the device access token request (RFC 8628 section 3.4).
pub const GRANT_TYPE_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The metadata member naming the device authorization endpoint (RFC 8628
/// section 4).
pub const DEVICE_AUTHORIZATION_ENDPOINT: &str = "device_authorization_endpoint";

/// A device authorization request (RFC 8628 section 3.1).
#[derive(Clone, Debug, Default)]
pub struct DeviceAuthorizationRequest {
    /// Requested scope; `None` lets the server choose.
    pub scope: Option<String>,
    /// Send the `completion_mode=deferred` hint (DTR-4); pass the same
    /// value to [`Client::device_token`] (DTR-5).
    pub deferred: bool,
}

/// The device authorization response (RFC 8628 section 3.2). `Debug`
/// redacts the device code, which is a credential of the token request.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct DeviceAuthorization {
    /// The device verification code (secret).
    pub device_code: String,
    /// The code the user types at the verification URI.
    pub user_code: String,
    /// Where the user goes.
    pub verification_uri: String,
    /// The verification URI with the user code in it, if the server gives
    /// one.
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    /// Lifetime of the codes in seconds.
    pub expires_in: u64,
    /// Minimum seconds between token requests; 5 when absent (section
    /// 3.2).
    #[serde(default = "default_interval")]
    pub interval: u64,
}

fn default_interval() -> u64 {
    5
}

impl fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("device_code", &"[redacted]")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("verification_uri_complete", &self.verification_uri_complete)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish()
    }
}

impl Client {
    /// The device authorization endpoint from the metadata (RFC 8628
    /// section 4).
    pub fn device_authorization_endpoint(&self) -> Option<&str> {
        self.metadata()
            .other
            .get(DEVICE_AUTHORIZATION_ENDPOINT)
            .and_then(|v| v.as_str())
    }

    /// Starts the device grant (RFC 8628 section 3.1) with this client's
    /// authentication. An OAuth error answer is [`Error::OAuth`].
    pub async fn device_authorization(
        &self,
        req: &DeviceAuthorizationRequest,
    ) -> Result<DeviceAuthorization, Error> {
        let endpoint = self
            .device_authorization_endpoint()
            .ok_or(Error::MissingEndpoint(DEVICE_AUTHORIZATION_ENDPOINT))?
            .to_owned();
        let mut params: Vec<(&str, &str)> = Vec::new();
        if let Some(scope) = &req.scope {
            params.push(("scope", scope));
        }
        if req.deferred {
            params.push(("completion_mode", dtr_proto::completion_mode::DEFERRED));
        }
        // RFC 9449 defines no proof for this endpoint; none is sent.
        let answer = self.post_form(&endpoint, &params, false).await?;
        if answer.status != 200 {
            return Err(oauth_or_unexpected(answer.status, &answer.body));
        }
        serde_json::from_slice(&answer.body).map_err(|_| unexpected(answer.status, &answer.body))
    }

    /// One device access token request (RFC 8628 section 3.4). The answer
    /// is typed like every token answer: a token, `authorization_pending` /
    /// `slow_down` while the user has not decided (section 3.5), or a
    /// deferral when the server defers the grant (DTR-8); `deferred` must
    /// match the hint of the authorization request (DTR-5).
    pub async fn device_token(
        &self,
        device: &DeviceAuthorization,
        deferred: bool,
    ) -> Result<TokenResult, Error> {
        let mut params = vec![
            ("grant_type", GRANT_TYPE_DEVICE_CODE),
            ("device_code", device.device_code.as_str()),
        ];
        if deferred {
            params.push(("completion_mode", dtr_proto::completion_mode::DEFERRED));
        }
        self.token_request(&params).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn response_parses_with_default_interval_and_redacted_debug() {
        let d: DeviceAuthorization = serde_json::from_str(
            r#"{"device_code":"DEVSECRET","user_code":"WDJB-MJHT","verification_uri":"https://as/device","expires_in":600,"extra":1}"#,
        )
        .unwrap();
        assert_eq!(d.interval, 5);
        assert_eq!(d.verification_uri_complete, None);
        let dbg = format!("{d:?}");
        assert!(
            !dbg.contains("DEVSECRET") && dbg.contains("WDJB-MJHT"),
            "{dbg}"
        );
    }
}
