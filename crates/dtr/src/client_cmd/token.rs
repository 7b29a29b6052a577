//! `dtr token`: runs a grant, optionally deferred, saves or prints the
//! deferral, and waits for the result (with callbacks when asked).

use super::connection::{client_auth, discover};
use super::output::{print_json, print_token, report_error, report_failure, resumable};
use super::state::save_state;
use super::wait::wait;
use super::{CibaMode, Grant, TokenArgs, FAILED, OK, USAGE};
use dtr_client::{
    BackchannelAuthentication, BackchannelRequest, CallbackReceiver, Ciba, Client,
    ClientCredentialsRequest, CompletionMode, NotificationToken, Poller, SystemClock, TokenResult,
    CALLBACK_PATH,
};
use dtr_proto::secret::MIN_NOTIFICATION_TOKEN_LEN;
use tokio::net::TcpListener;

/// Runs `dtr token`.
pub async fn token(args: TokenArgs) -> u8 {
    if args.grant == Grant::AuthorizationCode {
        if let Err(code) = super::code_grant::check_flags(&args) {
            return code;
        }
    } else if let Some(flag) = [
        (args.response_mode.is_some(), "--response-mode"),
        (args.no_browser, "--no-browser"),
        (args.par, "--par"),
    ]
    .iter()
    .find_map(|(given, flag)| given.then_some(flag))
    {
        eprintln!("error: {flag} is only used with --grant authorization_code");
        return USAGE;
    } else if args.interactive && args.grant == Grant::Device {
        eprintln!("error: --interactive is not available with --grant device");
        return USAGE;
    }
    let auth = match client_auth(&args.conn) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let notification_token = match args.notification_token.clone() {
        // DTR-12: refuse locally what the server would refuse anyway, with
        // a message naming the flag.
        Some(t) if t.len() < MIN_NOTIFICATION_TOKEN_LEN => {
            eprintln!(
                "error: --notification-token must be at least {MIN_NOTIFICATION_TOKEN_LEN} characters (128 bits)"
            );
            return USAGE;
        }
        t => t.map(NotificationToken::new),
    };
    let authorization_details = match args.authorization_details.as_deref() {
        None => None,
        Some(s) => match serde_json::from_str::<serde_json::Value>(s) {
            Ok(v @ serde_json::Value::Array(_)) => Some(v),
            _ => {
                eprintln!("error: --authorization-details must be a JSON array (RFC 9396)");
                return USAGE;
            }
        },
    };
    if args.no_wait && args.conn.dpop {
        // The deferral would be bound to a key that dies with this process.
        eprintln!("error: --no-wait with --dpop would lose the key the deferral is bound to; use --dpop-key FILE");
        return USAGE;
    }
    let ciba_like = args.grant == Grant::Ciba || args.bridge;
    if ciba_like && args.mode != CibaMode::Poll && args.callback_listen.is_none() {
        eprintln!("error: --mode ping and push need --callback-listen ADDR (the client's backchannel_client_notification_endpoint)");
        return USAGE;
    }
    if args.grant == Grant::Ciba && args.login_hint.is_none() {
        eprintln!("error: --grant ciba needs --login-hint USER");
        return USAGE;
    }
    if args.no_wait && args.callback_listen.is_some() {
        eprintln!(
            "error: --callback-listen with --no-wait: the receiver would stop with this process"
        );
        return USAGE;
    }
    if let Some(path) = &args.state {
        // Never overwrite a saved deferral that may still be pending.
        if path.exists() {
            eprintln!(
                "error: --state {}: the file exists (it may hold a pending deferral); resume it with `dtr poll --state`, or remove it",
                path.display()
            );
            return USAGE;
        }
    }
    let callbacks = match args.callback_listen {
        None => None,
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                let bound = listener.local_addr().unwrap_or(addr);
                eprintln!(
                    "callback receiver listening on http://{bound}{CALLBACK_PATH} (the client's deferred_client_notification_endpoint must point here)"
                );
                Some((listener, CallbackReceiver::new()))
            }
            Err(e) => {
                eprintln!("error: --callback-listen {addr}: cannot listen: {e}");
                return USAGE;
            }
        },
    };
    // DTR-12: one fresh 160-bit token per request authenticates the
    // callbacks of this deferral only.
    let notification_token = match (&callbacks, notification_token) {
        (Some(_), None) => Some(NotificationToken::generate()),
        (_, t) => t,
    };
    let client = match discover(&args.conn, auth).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    if args.grant == Grant::AuthorizationCode {
        return super::code_grant::run(&client, args, authorization_details).await;
    }
    let result = match args.grant {
        Grant::ClientCredentials => {
            let req = ClientCredentialsRequest {
                scope: args.scope,
                deferred: args.deferred,
                notification_token: notification_token.clone(),
                authorization_details,
            };
            // --interactive: the client shows a user the interaction_uri.
            let mode = match (args.interactive, args.deferred) {
                (true, _) => CompletionMode::DeferredInteractive,
                (false, true) => CompletionMode::Deferred,
                (false, false) => CompletionMode::Synchronous,
            };
            client
                .client_credentials_with_mode(&req, mode)
                .await
                .map(|r| r.result)
        }
        Grant::Device => crate::device_cmd::run(&client, args.scope, args.deferred).await,
        Grant::AuthorizationCode => return USAGE,
        Grant::Ciba => {
            let req = BackchannelRequest {
                scope: args.scope,
                login_hint: args.login_hint,
                binding_message: args.binding_message,
                notification_token: notification_token.clone(),
                ..Default::default()
            };
            return match client.backchannel_authentication(&req).await {
                Ok(a) => {
                    eprintln!(
                        "CIBA request sent: the user approves it at {}/ciba (expires in {} s)",
                        client.metadata().issuer,
                        a.expires_in
                    );
                    collect_ciba(&client, &a, args.mode, callbacks, notification_token).await
                }
                Err(e) => report_error(&e, &args.conn.issuer),
            };
        }
    };
    match result {
        Ok(TokenResult::Token(t)) => print_token(&t),
        Ok(TokenResult::Error(e)) => report_failure(&e),
        Ok(TokenResult::Deferred(d)) => {
            if let Some(path) = &args.state {
                match save_state(path, &d) {
                    Ok(()) => eprintln!(
                        "saved the deferral to {} (resume with `dtr poll --state`)",
                        path.display()
                    ),
                    Err(e) => {
                        // The code is printed below either way, so the
                        // deferral is not lost.
                        eprintln!("error: --state {}: cannot write: {e}", path.display());
                        print_json(&resumable(&d));
                        return USAGE;
                    }
                }
            }
            if args.bridge {
                return match client.bridge_to_ciba(&d, notification_token.clone()).await {
                    Ok(a) => {
                        eprintln!(
                            "deferral continued as CIBA: one decision, collected through the auth_req_id (expires in {} s)",
                            a.expires_in
                        );
                        collect_ciba(&client, &a, args.mode, callbacks, notification_token).await
                    }
                    Err(e) => report_error(&e, &args.conn.issuer),
                };
            }
            if args.no_wait {
                print_json(&resumable(&d));
                if let Some(jkt) = &d.dpop_jkt {
                    eprintln!("the deferral is DPoP-bound: poll or cancel it with the same --dpop-key (and --dpop-jkt {jkt})");
                }
                return OK;
            }
            let mut poller = Poller::new(&client, SystemClock, &d);
            let mut serving = None;
            if let (Some((listener, receiver)), Some(token)) = (callbacks, notification_token) {
                poller = poller.with_waker(receiver.register(&d, token));
                serving = Some(tokio::spawn(async move {
                    receiver.serve(listener, std::future::pending()).await
                }));
            }
            let code = wait(poller, &d, args.state.as_deref(), true).await;
            if let Some(task) = serving {
                task.abort();
            }
            code
        }
        Err(e) => report_error(&e, &args.conn.issuer),
    }
}

/// Collects a CIBA request (OpenID CIBA Core 1.0 section 10): polls with
/// the CIBA grant (`poll`; `ping` polls at once when the ping arrives), or
/// waits for the pushed token response (`push`), kept once by the
/// receiver.
async fn collect_ciba(
    client: &Client,
    a: &BackchannelAuthentication,
    mode: CibaMode,
    callbacks: Option<(TcpListener, CallbackReceiver)>,
    token: Option<NotificationToken>,
) -> u8 {
    let d = a.as_deferral(client);
    let mut serving = None;
    let mut waker = None;
    let mut receiver_kept = None;
    if let (Some((listener, receiver)), Some(token)) = (callbacks, token) {
        waker = Some(receiver.register(&d, token));
        receiver_kept = Some(receiver.clone());
        serving = Some(tokio::spawn(async move {
            receiver.serve(listener, std::future::pending()).await
        }));
    }
    let code = match (mode, waker, receiver_kept) {
        (CibaMode::Push, Some(wake), Some(receiver)) => {
            let deadline = tokio::time::sleep(std::time::Duration::from_secs(a.expires_in));
            tokio::pin!(deadline);
            loop {
                if let Some(pushed) = receiver.take_push(&d.code) {
                    if pushed.get("error").is_some() {
                        eprintln!(
                            "denied: {}",
                            pushed["error_description"]
                                .as_str()
                                .unwrap_or("access_denied")
                        );
                        break FAILED;
                    }
                    print_json(&pushed);
                    break OK;
                }
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = &mut deadline => {
                        eprintln!("expired: no push arrived before the request expired");
                        break FAILED;
                    }
                }
            }
        }
        (_, waker, _) => {
            let mut poller = Poller::new(Ciba(client), SystemClock, &d);
            if let Some(w) = waker {
                poller = poller.with_waker(w);
            }
            wait(poller, &d, None, false).await
        }
    };
    if let Some(task) = serving {
        task.abort();
    }
    code
}
