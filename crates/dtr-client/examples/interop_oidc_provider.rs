//! Interop: the library against panva's `oidc-provider`, a server nobody
//! on the dtr team wrote and that knows nothing of the Deferred Token
//! Response. Its standard parts must simply work:
//!
//! 1. discovery (RFC 8414) and a client credentials token;
//! 2. the same request with `completion_mode=deferred`: a server without
//!    DTR ignores the parameter and answers synchronously (DTR-2, DTR-3);
//! 3. cancellation refuses to claim success, because the metadata does not
//!    list the deferral-code token type (DTR-7);
//! 4. the device grant (RFC 8628): authorization, `authorization_pending`,
//!    approval by the user, then the token, honouring `interval` and
//!    `slow_down`.
//!
//! Usage: `interop_oidc_provider ISSUER CLIENT_ID CLIENT_SECRET APPROVE_URL`.
//! `APPROVE_URL` is a hook of `interop/oidc-provider/server.js` that plays
//! the user approving a `user_code` (the provider's own device pages need
//! a login UI). Run by `interop/run`; exits non-zero on the first failure.

use dtr_client::device::DeviceAuthorizationRequest;
use dtr_client::{
    Client, ClientAuth, ClientCredentialsRequest, ClientSecret, DeferralCode, Error, ErrorCode,
    TokenResult,
};
use std::process::ExitCode;
use std::time::{Duration, Instant};

type Failure = Box<dyn std::error::Error>;

fn fail(msg: impl Into<String>) -> Failure {
    msg.into().into()
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [issuer, client_id, secret, approve_url] = args.as_slice() else {
        eprintln!("usage: interop_oidc_provider ISSUER CLIENT_ID CLIENT_SECRET APPROVE_URL");
        return ExitCode::from(2);
    };
    match run(issuer, client_id, secret, approve_url).await {
        Ok(()) => {
            println!("oidc-provider interop: all checks passed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    issuer: &str,
    client_id: &str,
    secret: &str,
    approve_url: &str,
) -> Result<(), Failure> {
    let auth = ClientAuth::SecretBasic {
        client_id: client_id.to_owned(),
        secret: ClientSecret::new(secret),
    };
    let client = Client::discover(issuer, auth).await?;
    println!(
        "ok: discovered {} (deferred_token_response_supported: {})",
        client.metadata().issuer,
        client.metadata().deferred_token_response_supported
    );

    // 1 and 2: client credentials, without and with the DTR opt-in.
    for deferred in [false, true] {
        let req = ClientCredentialsRequest {
            scope: Some("read".into()),
            deferred,
            ..Default::default()
        };
        match client.client_credentials(&req).await? {
            TokenResult::Token(t) if !t.access_token.is_empty() => println!(
                "ok: client credentials token (deferred opt-in {deferred}): {} expires_in {:?}",
                t.token_type, t.expires_in
            ),
            other => {
                return Err(fail(format!(
                    "client credentials (deferred {deferred}): {other:?}"
                )))
            }
        }
    }

    // 3: DTR-7, nothing is sent to a server that would answer 200 for a
    // token type it does not know.
    match client.cancel(&DeferralCode::new("not-a-deferral")).await {
        Err(Error::CancellationUnsupported) => {
            println!("ok: cancellation refused locally (no deferral-code revocation advertised)")
        }
        other => {
            return Err(fail(format!(
                "cancel: expected CancellationUnsupported, got {other:?}"
            )))
        }
    }

    // 4: the device grant.
    let device = client
        .device_authorization(&DeviceAuthorizationRequest {
            scope: Some("read".into()),
            deferred: false,
        })
        .await?;
    println!(
        "ok: device authorization: user code {} at {} (interval {}s)",
        device.user_code, device.verification_uri, device.interval
    );
    match client.device_token(&device, false).await? {
        TokenResult::Error(e) if e.error == ErrorCode::AuthorizationPending => {
            println!("ok: authorization_pending before the user approved")
        }
        other => return Err(fail(format!("device token before approval: {other:?}"))),
    }
    let approved = reqwest::Client::new()
        .post(approve_url)
        .form(&[("user_code", device.user_code.as_str())])
        .send()
        .await?;
    if !approved.status().is_success() {
        return Err(fail(format!(
            "approval hook answered {}",
            approved.status()
        )));
    }
    println!("ok: the user approved {}", device.user_code);

    // Poll as RFC 8628 section 3.5 says: every `interval`, 5 s more per
    // slow_down, until the token or a terminal error.
    let mut interval = device.interval.max(1);
    let deadline = Instant::now() + Duration::from_secs(device.expires_in.min(120));
    loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        if Instant::now() > deadline {
            return Err(fail("device grant: no token before the deadline"));
        }
        match client.device_token(&device, false).await? {
            TokenResult::Token(t) if !t.access_token.is_empty() => {
                println!(
                    "ok: device grant token: {} scope {:?} refresh token {}",
                    t.token_type,
                    t.scope,
                    if t.refresh_token.is_some() {
                        "yes"
                    } else {
                        "no"
                    }
                );
                return Ok(());
            }
            TokenResult::Error(e) if e.error == ErrorCode::AuthorizationPending => {}
            TokenResult::Error(e) if e.error == ErrorCode::SlowDown => interval += 5,
            other => return Err(fail(format!("device token after approval: {other:?}"))),
        }
    }
}
