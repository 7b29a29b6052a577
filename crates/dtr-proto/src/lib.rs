//! Wire types and pure protocol logic of the OAuth Deferred Token Response
//! (`draft-ietf-oauth-deferred-token-response`, "the draft").
//!
//! Nothing in this crate performs I/O: the authorization server, the client
//! library and the tests all share these types, and every rule here can be
//! unit-tested without a socket or a database. Requirement numbers
//! (`DTR-n`) refer to the project's SPEC.md.
#![warn(missing_docs)]

pub mod ciba;
pub mod completion_mode;
pub mod deferral;
pub mod device;
pub mod dpop;
pub mod error;
pub mod lifecycle;
pub mod metadata;
pub mod oidc;
pub mod params;
pub mod redirect_uri;
pub mod resource;
pub mod scope;
pub mod secret;
pub mod token;
pub mod token_exchange;

pub use error::{ErrorCode, OAuthError};

/// Grant type of polling requests (draft, "Token Endpoint — Polling").
pub const GRANT_TYPE_DEFERRED: &str = "urn:ietf:params:oauth:grant-type:deferred";
/// Grant type of the client credentials grant (OAuth 2.1 section 4.2).
pub const GRANT_TYPE_CLIENT_CREDENTIALS: &str = "client_credentials";
/// Grant type of the authorization code grant (OAuth 2.1 section 4.1).
pub const GRANT_TYPE_AUTHORIZATION_CODE: &str = "authorization_code";
/// Grant type of the refresh token grant (OAuth 2.1 section 4.3).
pub const GRANT_TYPE_REFRESH_TOKEN: &str = "refresh_token";
/// Grant type of the device authorization grant (RFC 8628 section 3.4).
pub const GRANT_TYPE_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Grant type of token exchange (RFC 8693 section 2.1).
pub const GRANT_TYPE_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Grant type of CIBA (OpenID CIBA Core 1.0 section 10.1).
pub const GRANT_TYPE_CIBA: &str = "urn:openid:params:grant-type:ciba";
/// RFC 8693 section 3 token type identifier of access tokens.
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Token type identifier of deferral codes at the revocation endpoint (DTR-31).
pub const TOKEN_TYPE_DEFERRAL_CODE: &str = "urn:ietf:params:oauth:token-type:deferral-code";
/// `token_type_hint` for access tokens (RFC 7009 section 2.1).
pub const TOKEN_TYPE_HINT_ACCESS_TOKEN: &str = "access_token";
/// `token_type_hint` for refresh tokens (RFC 7009 section 2.1).
pub const TOKEN_TYPE_HINT_REFRESH_TOKEN: &str = "refresh_token";

/// HTTP paths of the authorization server. The router and the metadata
/// document both read them from here so they cannot drift apart.
pub mod paths {
    /// RFC 8414 metadata document.
    pub const METADATA: &str = "/.well-known/oauth-authorization-server";
    /// Signing keys of access tokens (RFC 9068).
    pub const JWKS: &str = "/jwks.json";
    /// Token endpoint: every grant, the deferred response and polling.
    pub const TOKEN: &str = "/token";
    /// Revocation endpoint (RFC 7009), also cancels deferrals (DTR-31).
    pub const REVOKE: &str = "/revoke";
    /// Introspection endpoint (RFC 7662).
    pub const INTROSPECT: &str = "/introspect";
    /// Dynamic client registration (RFC 7591); `/{client_id}` manages one
    /// registration (RFC 7592).
    pub const REGISTER: &str = "/register";
    /// Page behind an `interaction_uri` (DTR-11); followed by `/{handle}`.
    pub const INTERACT: &str = "/interact";
    /// Authorization endpoint (OAuth 2.1 section 3.1).
    pub const AUTHORIZE: &str = "/authorize";
    /// Where the consent page posts the user's decision.
    pub const AUTHORIZE_CONSENT: &str = "/authorize/consent";
    /// Pushed authorization request endpoint (RFC 9126).
    pub const PAR: &str = "/par";
    /// Login form of the server's pages.
    pub const LOGIN: &str = "/login";
    /// Ends the login session.
    pub const LOGOUT: &str = "/logout";
    /// Device authorization endpoint (RFC 8628 section 3.1).
    pub const DEVICE_AUTHORIZATION: &str = "/device_authorization";
    /// The device grant's user page, the `verification_uri` (RFC 8628 section 3.3).
    pub const DEVICE: &str = "/device";
    /// Liveness probe that also checks the database.
    pub const HEALTHZ: &str = "/healthz";
    /// Prefix of the admin API.
    pub const ADMIN: &str = "/admin";
    /// Prometheus metrics (text exposition format), unauthenticated.
    pub const METRICS: &str = "/metrics";
    /// dtr's AuthZEN metadata document (Authorization API 1.0, "Policy
    /// Decision Point Metadata"), listing its `access_request_endpoint`.
    pub const AUTHZEN_CONFIGURATION: &str = "/.well-known/authzen-configuration";
    /// dtr's ARAP access request endpoint; `/{id}` is a task's status
    /// endpoint, `/{id}/cancel` its cancellation.
    pub const ACCESS_REQUESTS: &str = "/access/v1/requests";
    /// Where ARAP services call dtr back about a task dtr submitted;
    /// followed by `/{secret}`, the task's unguessable path segment.
    pub const AUTHZEN_CALLBACK: &str = "/authzen/callback";
    /// OpenID Connect Discovery 1.0 section 4: the provider configuration.
    pub const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";
    /// OpenID Connect Core 1.0 section 5.3: the UserInfo endpoint.
    pub const USERINFO: &str = "/userinfo";
    /// OpenID CIBA Core 1.0 section 7: the backchannel authentication endpoint.
    pub const BC_AUTHORIZE: &str = "/bc-authorize";
    /// The signed-in page where a user decides CIBA requests (the
    /// authentication device of CIBA Core section 2).
    pub const CIBA: &str = "/ciba";
}
