//! Client library for OAuth 2.1 authorization servers that implement the
//! Deferred Token Response (`draft-ietf-oauth-deferred-token-response`).
//!
//! - [`Client`] discovers the server (RFC 8414), authenticates the client
//!   (RFC 6749 section 2.3.1), runs the client credentials grant with
//!   `completion_mode=deferred`, polls a deferral code once, cancels it
//!   through revocation (RFC 7009, DTR-31) and introspects tokens.
//! - [`Poller`] waits for a deferral to resolve: it honours `interval`,
//!   adds 5 s per `slow_down` (DTR-19), stops on terminal errors, never
//!   polls past the code's lifetime and can be woken early by a callback
//!   notification (DTR-30). Time comes from a [`Clock`], so the polling
//!   logic is tested without sleeping.
//! - [`DpopKey`] makes DPoP proofs (RFC 9449); with
//!   [`Client::with_dpop`] every token request, poll and cancellation
//!   carries one, deferral codes and tokens are bound to the key (DTR-13,
//!   DTR-20) and server nonces are handled (`use_dpop_nonce`, one retry).
//!   [`Client::fetch_resource`] presents a DPoP-bound token to a resource.
//! - [`ClientAuth::PrivateKeyJwt`] authenticates with a fresh RFC 7523
//!   assertion signed by an [`Es256Key`] on every request.
//! - [`Client::device_authorization`] and [`Client::device_token`] run the
//!   device grant (RFC 8628), with the DTR hint when asked (DTR-4, DTR-5).
//! - [`CallbackReceiver`] is an axum router that checks the bearer of
//!   callback notifications in constant time (DTR-26) and wakes the poller
//!   of the matching deferral; it never takes a callback as the result
//!   (DTR-30).
//! - [`Client::authorize`] runs the authorization code grant (OAuth 2.1
//!   section 4.1) through a [`LoopbackReceiver`] (RFC 8252 section 7.3):
//!   PKCE S256, `state` and `iss` (RFC 9207) checks, `dpop_jkt` (RFC 9449
//!   section 10), `form_post`, pushed requests (RFC 9126); the redirect
//!   brings a `code` or, when the
//!   server deferred at the authorization endpoint, a `deferral_code` whose
//!   first poll carries the `code_verifier` ([`DeferredAuthorization`]).
//! - [`Client::backchannel_authentication`] starts an OpenID CIBA request,
//!   [`Ciba`] collects it through the [`Poller`], and
//!   [`Client::bridge_to_ciba`] continues a deferral as one; the
//!   [`CallbackReceiver`] also takes CIBA pings and keeps a push.
//! - [`AdminClient`] drives the server's admin API.
//!
//! Requirement numbers (`DTR-n`) refer to the project's SPEC.md.
#![warn(missing_docs)]

pub mod admin;
pub mod auth;
pub mod callback;
pub mod ciba;
pub mod client;
pub mod clock;
pub mod code_flow;
pub mod completion_mode;
pub mod deferral;
pub mod device;
pub mod dpop;
pub mod error;
mod http;
pub mod keys;
pub mod poller;
pub mod redirect;

pub use admin::{AdminClient, AdminError};
pub use auth::ClientAuth;
pub use callback::{CallbackReceiver, CALLBACK_PATH};
pub use ciba::{BackchannelAuthentication, BackchannelRequest, Ciba};
pub use client::{Client, ClientCredentialsRequest, ResourceResponse, TokenReply};
pub use clock::{Clock, ManualClock, SystemClock};
pub use code_flow::{
    print_url, system_browser, AuthorizationCodeRequest, AuthorizationOutcome, DeferredAt,
    DeferredAuthorization, PendingAuthorization, ResponseMode,
};
pub use completion_mode::CompletionMode;
pub use deferral::{Deferral, TokenResult};
pub use device::{DeviceAuthorization, DeviceAuthorizationRequest};
pub use dpop::DpopKey;
pub use error::Error;
pub use keys::Es256Key;
pub use poller::{
    is_terminal_poll_error, FirstPollParams, PollOutcome, PollProgress, PollTransport, Poller,
    TERMINAL_POLL_ERRORS,
};
pub use redirect::{AuthorizationResponse, LoopbackReceiver, ResponseError, REDIRECT_PATH};

// Re-exported so that users need not depend on `dtr-proto` for the types
// that appear in this crate's signatures.
pub use dtr_proto::metadata::AuthorizationServerMetadata;
pub use dtr_proto::secret::{ClientSecret, DeferralCode, NotificationToken};
pub use dtr_proto::token::{DeferredResponse, TokenResponse};
pub use dtr_proto::{ErrorCode, OAuthError};
