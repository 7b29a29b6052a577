//! `[ciba]`: OpenID CIBA Core 1.0 on the deferral engine, and the bridge
//! from a deferral to CIBA, which is opt-in.

use serde::Deserialize;

/// `[ciba]` of the configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CibaConfig {
    /// The deferral-to-CIBA bridge: a client holding a live deferral code
    /// of its own may send a backchannel authentication request with
    /// `login_hint_token=urn:dtr:deferral:<deferral_code>` and get an
    /// `auth_req_id` for the same deferral (advertised in the metadata as
    /// `dtr_ciba_deferral_bridge_supported`). Off by default.
    pub bridge: bool,
}
