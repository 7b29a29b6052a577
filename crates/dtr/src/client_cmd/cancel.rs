//! `dtr cancel`: cancels a deferral through revocation (DTR-31), given its
//! code or the `--state` file that holds it.

use super::connection::{client_auth, client_for_code, discover};
use super::output::report_error;
use super::state::{forget_state, load_state};
use super::{deferral_code, CancelArgs, OK, USAGE};
use std::path::Path;

/// Runs `dtr cancel`.
pub async fn cancel(args: CancelArgs) -> u8 {
    if let Some(path) = args.state.clone() {
        return cancel_state(args, &path).await;
    }
    let Some(code) = deferral_code(args.code, args.deferral_code) else {
        return USAGE;
    };
    let client = match client_for_code(&args.conn, args.dpop_jkt.as_deref()).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.cancel(&code).await {
        Ok(()) => {
            // RFC 7009 section 2.2 (DTR-33): the server answers 200 for
            // unknown, foreign or finished codes too, so "cancelled" only
            // means the server holds no pending deferral for this code now.
            eprintln!("cancelled: the deferral code is revoked; later polls answer access_denied");
            OK
        }
        Err(e) => report_error(&e, &args.conn.issuer),
    }
}

/// `dtr cancel --state FILE`: revokes the saved deferral's code (with the
/// proof of its key when bound, DTR-13, DTR-31) and removes the file.
async fn cancel_state(args: CancelArgs, path: &Path) -> u8 {
    if args.code.is_some() {
        eprintln!(
            "error: DEFERRAL_CODE and --state both given; the code comes from the state file"
        );
        return USAGE;
    }
    let d = match load_state(path, &args.conn) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let auth = match client_auth(&args.conn) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let client = match discover(&args.conn, auth).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.cancel_deferral(&d).await {
        Ok(()) => {
            eprintln!("cancelled: the deferral code is revoked; later polls answer access_denied");
            forget_state(Some(path));
            OK
        }
        Err(e) => report_error(&e, &args.conn.issuer),
    }
}
