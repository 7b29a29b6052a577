//! An agent that needs a human's approval for a purchase and does not sit
//! idle while it waits.
//!
//! It asks for the `payments` scope with `completion_mode=deferred`; the
//! demo server's policy sends that to a reviewer, so the answer is a
//! deferral (DTR-8). The agent then keeps doing its other work while a
//! [`Poller`] waits for the decision in the same task (`tokio::select!`),
//! and places the order once the token arrives, or gives up cleanly when
//! the purchase is denied or the deferral expires.
//!
//! ```sh
//! cargo run --bin dtr -- serve                       # the demo server
//! cargo run -p dtr-client --example agent            # this agent
//! dtr admin list --state pending                     # a reviewer, elsewhere
//! dtr admin approve <id>
//! ```
//!
//! With `AGENT_CALLBACK_LISTEN=127.0.0.1:8765` the agent also serves a
//! callback receiver there and sends a fresh `client_notification_token`;
//! if the client's `deferred_client_notification_endpoint` is
//! `http://127.0.0.1:8765/callback` (server in `dev_mode`), the approval
//! wakes the poller at once instead of at its next poll (DTR-26, DTR-30).
//!
//! Environment: `DTR_ISSUER` (default `http://127.0.0.1:8080`),
//! `DTR_CLIENT_ID` / `DTR_CLIENT_SECRET` (default the demo's `svc` /
//! `svc-secret`), `AGENT_SCOPE` (default `payments`).

use dtr_client::{
    CallbackReceiver, Client, ClientAuth, ClientCredentialsRequest, ClientSecret,
    NotificationToken, PollOutcome, Poller, SystemClock, TokenResult, CALLBACK_PATH,
};
use std::time::Duration;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = env_or("DTR_ISSUER", "http://127.0.0.1:8080");
    let auth = ClientAuth::SecretBasic {
        client_id: env_or("DTR_CLIENT_ID", "svc"),
        secret: ClientSecret::new(env_or("DTR_CLIENT_SECRET", "svc-secret")),
    };
    let client = Client::discover(&issuer, auth).await?;

    // Optional callback receiver: the notification token is fresh for this
    // request only (DTR-12).
    let receiver = match std::env::var("AGENT_CALLBACK_LISTEN") {
        Ok(addr) => {
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            let receiver = CallbackReceiver::new();
            println!(
                "[agent] callbacks on http://{}{CALLBACK_PATH}",
                listener.local_addr()?
            );
            let serving = receiver.clone();
            tokio::spawn(async move { serving.serve(listener, std::future::pending()).await });
            Some((receiver, NotificationToken::generate()))
        }
        Err(_) => None,
    };

    let scope = env_or("AGENT_SCOPE", "payments");
    println!("[agent] asking for scope '{scope}' to buy 40 reams of paper");
    let request = ClientCredentialsRequest {
        scope: Some(scope),
        deferred: true,
        notification_token: receiver.as_ref().map(|(_, t)| t.clone()),
        ..Default::default()
    };
    let deferral = match client.client_credentials(&request).await? {
        TokenResult::Token(t) => {
            println!(
                "[agent] granted at once (scope {:?}); placing the order",
                t.scope
            );
            return Ok(());
        }
        TokenResult::Error(e) => {
            println!("[agent] refused: {e}");
            return Ok(());
        }
        TokenResult::Deferred(d) => d,
    };
    println!(
        "[agent] the purchase needs a reviewer (decision within {}s). A reviewer runs:\n\
         \n    dtr admin list --state pending\n    dtr admin approve <id>\n",
        deferral.expires_in
    );

    let mut poller = Poller::new(&client, SystemClock, &deferral);
    if let Some((receiver, token)) = &receiver {
        // A valid callback only makes the poller poll now (DTR-30).
        poller = poller.with_waker(receiver.register(&deferral, token.clone()));
    }
    let waiting = poller.run(|p| {
        let step = p.error_description.as_deref().unwrap_or("no step reported");
        println!("[agent] (still {}: {step})", p.error);
        if let Some(uri) = &p.interaction_uri {
            println!("[agent] someone must open {uri}");
        }
    });
    tokio::pin!(waiting);

    // The other work: here a tick every two seconds stands in for it.
    let mut work = tokio::time::interval(Duration::from_secs(2));
    let mut done = 0u32;
    let outcome = loop {
        tokio::select! {
            outcome = &mut waiting => break outcome?,
            _ = work.tick() => {
                done += 1;
                println!("[agent] meanwhile: finished background task #{done}");
            }
        }
    };
    match outcome {
        PollOutcome::Token(t) => println!(
            "[agent] approved after {done} tasks: placing the order with a {} token for scope {:?}",
            t.token_type, t.scope
        ),
        PollOutcome::Failed(e) => println!("[agent] not approved ({e}); the order is dropped"),
        PollOutcome::Expired => println!("[agent] nobody decided in time; the order is dropped"),
    }
    Ok(())
}
