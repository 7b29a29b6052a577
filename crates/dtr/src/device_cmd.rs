//! `dtr token --grant device`: the device side of RFC 8628. Starts the
//! device authorization, shows the user code and where to enter it, then
//! polls the device code with RFC 8628's own pacing (section 3.5: wait
//! `interval`, add 5 s on every `slow_down`) until the user has decided.
//! What comes back then is an ordinary token answer: a token, an error,
//! or a deferral (the server may still defer an approved grant, DTR-3),
//! which `dtr token` continues exactly like any other deferral.

use dtr_client::{
    Client, DeviceAuthorization, DeviceAuthorizationRequest, Error, ErrorCode, TokenResult,
};
use std::time::Duration;

/// RFC 8628 section 3.5: every `slow_down` adds five seconds for good.
const SLOW_DOWN_STEP: u64 = 5;

/// What the user is shown: the code and the address, large enough to be
/// read from across a room, on stderr (stdout stays the JSON result).
pub fn banner(d: &DeviceAuthorization) -> String {
    let mut s = String::new();
    s.push_str("\n  To approve this device, open\n\n");
    s.push_str(&format!("      {}\n\n", d.verification_uri));
    s.push_str("  and enter the code\n\n");
    s.push_str(&format!("      {}\n\n", d.user_code));
    if let Some(c) = &d.verification_uri_complete {
        s.push_str(&format!("  (or open {c} directly)\n"));
    }
    s.push_str(&format!(
        "  The code expires in {} seconds.\n",
        d.expires_in
    ));
    s
}

/// Runs the device grant up to the first answer that is not "the user has
/// not decided yet": a token, a final error, or a deferral.
pub async fn run(
    client: &Client,
    scope: Option<String>,
    deferred: bool,
) -> Result<TokenResult, Error> {
    // The hint at the device authorization endpoint (DTR-4) and the token
    // request's opt-in always agree (DTR-5).
    let d = client
        .device_authorization(&DeviceAuthorizationRequest { scope, deferred })
        .await?;
    eprintln!("{}", banner(&d));
    let mut interval = d.interval.max(1);
    loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        match client.device_token(&d, deferred).await? {
            TokenResult::Error(e) if e.error == ErrorCode::AuthorizationPending => {
                eprintln!("waiting for the user to approve (next check in {interval} s)");
            }
            TokenResult::Error(e) if e.error == ErrorCode::SlowDown => {
                interval += SLOW_DOWN_STEP;
                eprintln!("slow_down: checking every {interval} s from now on");
            }
            TokenResult::Deferred(def) => {
                eprintln!("the user approved; the server deferred the request for a decision");
                return Ok(TokenResult::Deferred(def));
            }
            other => return Ok(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_shows_code_and_address() {
        let d: DeviceAuthorization = serde_json::from_value(serde_json::json!({
            "device_code": "SECRET-DEVICE-CODE",
            "user_code": "WDJB-MJHT",
            "verification_uri": "https://as.example/device",
            "verification_uri_complete": "https://as.example/device?user_code=WDJB-MJHT",
            "expires_in": 600,
            "interval": 5
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let b = banner(&d);
        assert!(b.contains("      WDJB-MJHT\n") && b.contains("      https://as.example/device\n"));
        assert!(b.contains("600 seconds"));
        assert!(
            !b.contains("SECRET-DEVICE-CODE"),
            "the device code is a credential"
        );
    }
}
