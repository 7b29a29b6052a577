//! The device authorization grant (RFC 8628), deferrable: the device
//! authorization endpoint, the user's decision on the `/device` page, and
//! the device-code token request.
//!
//! Two pending states follow each other and are never confused:
//! 1. until the user acts, the device-code token request answers RFC 8628
//!    section 3.5 `authorization_pending` / `slow_down` (never a
//!    `deferral_code`);
//! 2. once the user approved, the token request is a user grant like the
//!    authorization code: the policy may defer it (fraud review, DTR-3),
//!    and then the answer is the deferred response with a `deferral_code`,
//!    the device code is spent, and only the deferral poll continues
//!    (whose answers never carry device-grant states).
//!
//! The `completion_mode=deferred` hint on the device authorization request
//! is remembered with the device code (DTR-4) and the token request must
//! carry `deferred` too, else `invalid_request` (DTR-5).

use super::pipeline::check_client;
use super::{execute, GrantContext, GrantOutcome, GrantRequest, RefreshPlan, StoredGrant};
use crate::error::Error;
use crate::session::SessionUser;
use crate::state::AppState;
use crate::store::{ClientRecord, DeviceCodeRecord, NewDeviceCode};
use dtr_proto::device::{
    decide_device, DeviceAuthorizationRequest, DeviceAuthorizationResponse, DeviceDecision,
    UserCode, SLOW_DOWN_INCREMENT_MS,
};
use dtr_proto::scope::Scope;
use dtr_proto::secret::{random_token, DeviceCode};
use dtr_proto::token::DeferralOptIn;
use dtr_proto::{ErrorCode, OAuthError, GRANT_TYPE_DEVICE_CODE, GRANT_TYPE_REFRESH_TOKEN};
use tracing::info;

/// `POST /device_authorization` (RFC 8628 section 3.1) for an
/// authenticated (or public) client.
pub async fn authorize(
    state: &AppState,
    client: &ClientRecord,
    req: DeviceAuthorizationRequest,
) -> Result<DeviceAuthorizationResponse, crate::error::Error> {
    check_client(client, GRANT_TYPE_DEVICE_CODE)?;
    let scope = super::scope_within_client(client, req.scope)?;
    let cfg = &state.config.device;
    let now = state.clock.now_ms();
    let device_code = DeviceCode::generate();
    // 20^8 user codes: a collision with a stored one is rare, and then we
    // simply draw again.
    for _ in 0..5 {
        let user_code = UserCode::generate();
        let inserted = state
            .store
            .insert_device_code(&NewDeviceCode {
                device_code_hash: device_code.hash(),
                user_code_hash: user_code.hash(),
                client_id: client.client_id.clone(),
                scope: scope.to_string(),
                deferred_hint: req.completion_mode.deferred,
                created_at: now,
                expires_at: now + cfg.expires_in as i64 * 1000,
                interval_ms: cfg.interval as i64 * 1000,
            })
            .await?;
        if inserted {
            info!(client = %client.client_id, "device authorization started");
            let verification_uri = format!("{}{}", state.issuer, dtr_proto::paths::DEVICE);
            let complete = form_urlencoded::Serializer::new(String::new())
                .append_pair("user_code", &user_code.display())
                .finish();
            // DTR-4: the same shape whether or not the hint was sent.
            return Ok(DeviceAuthorizationResponse {
                device_code: device_code.secret().to_owned(),
                user_code: user_code.display(),
                verification_uri_complete: Some(format!("{verification_uri}?{complete}")),
                verification_uri,
                expires_in: cfg.expires_in,
                interval: cfg.interval,
            });
        }
    }
    Err(OAuthError::with_description(
        ErrorCode::TemporarilyUnavailable,
        "could not allocate a user code; try again",
    )
    .into())
}

/// Why a user code entered on the page leads nowhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupError {
    /// Not a pending code (unknown, used, expired, mistyped).
    Unknown,
    /// Too many wrong entries: refused without looking.
    TooManyAttempts,
}

fn failure_keys(user: &SessionUser) -> [String; 2] {
    [
        format!("session:{}", user.session_id_hash),
        format!("user:{}", user.username),
    ]
}

/// Finds the pending device authorization of a user code typed on the
/// page. Wrong entries count against the session and the user; past the
/// limit nothing is looked up any more (RFC 8628 section 5.1: 34 bits of
/// user code are only enough with rate limiting).
pub async fn lookup(
    state: &AppState,
    user: &SessionUser,
    input: &str,
) -> Result<Result<(UserCode, DeviceCodeRecord), LookupError>, crate::error::Error> {
    let cfg = &state.config.device;
    let window = cfg.failure_window as i64 * 1000;
    let now = state.clock.now_ms();
    for key in failure_keys(user) {
        if state.store.user_code_failures(&key, window, now).await? >= cfg.max_user_code_failures {
            return Ok(Err(LookupError::TooManyAttempts));
        }
    }
    let found = match UserCode::parse(input) {
        Some(code) => state
            .store
            .pending_device_code_by_user_code(&code.hash(), now)
            .await?
            .map(|rec| (code, rec)),
        None => None,
    };
    match found {
        Some(f) => Ok(Ok(f)),
        None => {
            let mut worst = 0;
            for key in failure_keys(user) {
                worst = worst.max(
                    state
                        .store
                        .count_user_code_failure(&key, window, now)
                        .await?,
                );
            }
            info!(user = %user.username, failures = worst, "wrong user code entered");
            Ok(Err(if worst >= cfg.max_user_code_failures {
                LookupError::TooManyAttempts
            } else {
                LookupError::Unknown
            }))
        }
    }
}

/// Records the user's decision on a device authorization; the user code
/// is single-use. Approval is also the user's consent to the client for
/// that scope (added to any consent given before), which redemption of a
/// deferred grant re-checks (DTR-23). Returns whether it applied.
pub async fn decide_user_code(
    state: &AppState,
    user: &SessionUser,
    code: &UserCode,
    rec: &DeviceCodeRecord,
    approve: bool,
) -> Result<bool, crate::error::Error> {
    let now = state.clock.now_ms();
    if approve {
        let previous = state
            .store
            .get_consent(&user.username, &rec.client_id)
            .await?;
        let mut scope: Vec<String> = previous
            .map(|c| {
                c.scope
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        scope.extend(
            rec.scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
        let scope = Scope::parse(&scope.join(" ")).unwrap_or_default();
        state
            .store
            .grant_consent(
                &user.username,
                &rec.client_id,
                &scope.to_string(),
                &super::new_consent_id(),
                now,
            )
            .await?;
    }
    let done = state
        .store
        .decide_device_code(
            &code.hash(),
            approve,
            &user.username,
            &user.session_id_hash,
            now,
        )
        .await?;
    if done {
        info!(client = %rec.client_id, user = %user.username, approve, "device authorization decided");
    }
    Ok(done)
}

fn unknown_device_code() -> OAuthError {
    OAuthError::with_description(ErrorCode::InvalidGrant, "invalid device code")
}

/// The device-code token request (RFC 8628 section 3.4).
pub async fn token(
    state: &AppState,
    client: &ClientRecord,
    device_code: &DeviceCode,
    opt_in: DeferralOptIn,
    dpop_jkt: Option<String>,
) -> Result<GrantOutcome, Error> {
    let hash = device_code.hash();
    // A request that loses a race (another request or the user changed
    // the row between our read and our conditional write) reads again.
    super::until_settled("device code is changing; try again", || async {
        let now = state.clock.now_ms();
        let rec = state.store.device_code_by_hash(&hash).await?;
        // Another client's code is answered like an unknown one.
        let Some(rec) = rec.filter(|r| r.client_id == client.client_id) else {
            return Err(unknown_device_code().into());
        };
        // DTR-5: the hint given at the device authorization endpoint binds
        // the token request.
        if rec.deferred_hint && !opt_in.completion_mode.deferred {
            return Err(OAuthError::invalid_request(
                "the device authorization request carried completion_mode=deferred; the token request must carry it too",
            ).into());
        }
        let decision = decide_device(&rec.view(), now);
        match decision {
            DeviceDecision::Pending | DeviceDecision::SlowDown => {
                // RFC 8628 section 3.5: every slow_down adds 5 s for good.
                let interval = rec.interval_ms
                    + if decision == DeviceDecision::SlowDown {
                        SLOW_DOWN_INCREMENT_MS
                    } else {
                        0
                    };
                if !state
                    .store
                    .record_device_poll(&hash, rec.last_polled_at, interval, now)
                    .await?
                {
                    return Ok(None);
                }
                Err(decision
                    .to_error(rec.interval_ms)
                    .unwrap_or_else(unknown_device_code)
                    .into())
            }
            DeviceDecision::Collect => {
                collect(state, client, &rec, opt_in.clone(), dpop_jkt.clone())
                    .await
                    .map(Some)
            }
            other => Err(other
                .to_error(rec.interval_ms)
                .unwrap_or_else(unknown_device_code)
                .into()),
        }
    })
    .await
}

/// The user approved: issue, refuse or defer by policy, exactly once.
async fn collect(
    state: &AppState,
    client: &ClientRecord,
    rec: &DeviceCodeRecord,
    opt_in: DeferralOptIn,
    dpop_jkt: Option<String>,
) -> Result<GrantOutcome, Error> {
    let username = rec.username.clone().ok_or_else(unknown_device_code)?;
    let scope = Scope::parse(&rec.scope).unwrap_or_default();
    // Refusals the client can fix must not spend the approval: the policy
    // outcome and its gates are settled before the device code is consumed
    // (DTR-14: a public client is deferred only with a DPoP proof), so the
    // client may ask again with the opt-in or a proof.
    let subject = crate::pdp::wire::Subject::User(username.clone());
    let outcome = super::plan(
        state,
        super::PlanRequest {
            client,
            grant_type: GRANT_TYPE_DEVICE_CODE,
            subject: &subject,
            scope: &scope,
            authorization_details: None,
            audience: &[],
            opt_in: &opt_in,
            dpop_jkt: dpop_jkt.as_deref(),
        },
    )
    .await?;
    let now = state.clock.now_ms();
    let consent = state
        .store
        .get_consent(&username, &client.client_id)
        .await?;
    let Some(consent) =
        consent.filter(|c| scope.is_subset(&Scope::parse(&c.scope).unwrap_or_default()))
    else {
        return Err(OAuthError::with_description(
            ErrorCode::AccessDenied,
            "the user's consent was revoked",
        )
        .into());
    };
    // Exactly once: only the request that moves the code out of
    // `approved` goes on; every later one gets `invalid_grant`.
    if !state
        .store
        .redeem_device_code(&rec.device_code_hash, now)
        .await?
    {
        return Err(unknown_device_code().into());
    }
    let refresh = client
        .grant_types
        .iter()
        .any(|g| g == GRANT_TYPE_REFRESH_TOKEN)
        .then(|| RefreshPlan {
            scope: None,
            // RFC 9449 section 5: a public client's refresh token is bound.
            dpop_jkt: if client.auth_method == "none" {
                dpop_jkt.clone()
            } else {
                None
            },
        });
    execute(
        state,
        GrantRequest {
            client,
            grant_type: GRANT_TYPE_DEVICE_CODE,
            scope,
            authorization_details: None,
            subject: username.clone(),
            opt_in,
            dpop_jkt,
            grant: StoredGrant::User(GrantContext {
                username,
                client_id: client.client_id.clone(),
                session_id_hash: rec.session_id_hash.clone(),
                consent_id: consent.id,
                family_id: format!("fam_{}", random_token(12)),
                refresh,
                oidc: None,
            }),
            not_after: None,
        },
        outcome,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_defaults_to_the_client_and_never_widens() {
        let c = ClientRecord {
            client_id: "tv".into(),
            secret_hash: None,
            auth_method: "none".into(),
            grant_types: vec![GRANT_TYPE_DEVICE_CODE.into()],
            scope: "read write".into(),
            redirect_uris: vec![],
            jwks: None,
            jwks_uri: None,
            notification_endpoint: None,
            enabled: true,
            admin_disabled: false,
            dpop_bound_access_tokens: false,
            registration_token_hash: None,
            metadata: None,
            require_par: false,
            deferred_authorization_endpoint: false,
            require_signed_request_object: false,
            owner: None,
        };
        assert_eq!(
            crate::grants::scope_within_client(&c, None)
                .unwrap()
                .to_string(),
            "read write"
        );
        assert_eq!(
            crate::grants::scope_within_client(&c, Scope::parse("read").ok())
                .unwrap()
                .to_string(),
            "read"
        );
        assert_eq!(
            crate::grants::scope_within_client(&c, Scope::parse("admin").ok())
                .unwrap_err()
                .error,
            ErrorCode::InvalidScope
        );
    }
}
