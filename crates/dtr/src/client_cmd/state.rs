//! `--state FILE`: the saved deferral (JSON, mode 0600, it holds the code)
//! that lets an interrupted run be resumed or cancelled, and its removal
//! once the deferral is finished.

use super::output::safe;
use super::{ConnectionArgs, USAGE};
use dtr_client::{Deferral, ErrorCode};
use std::io::Write;
use std::path::Path;

/// Writes the deferral to `path` readable by its owner only (it holds the
/// code, DTR-29), never over an existing file.
pub(super) fn save_state(path: &Path, d: &Deferral) -> std::io::Result<()> {
    let json = serde_json::to_string_pretty(d).map_err(std::io::Error::other)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(json.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Reads a saved deferral and checks that it belongs to the issuer and
/// client of the flags: a deferral code is never sent to another server
/// than the one that issued it.
pub(super) fn load_state(path: &Path, conn: &ConnectionArgs) -> Result<Deferral, u8> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("error: --state {}: {e}", path.display());
        USAGE
    })?;
    let d: Deferral = serde_json::from_str(&text).map_err(|e| {
        eprintln!(
            "error: --state {}: not a saved deferral: {e}",
            path.display()
        );
        USAGE
    })?;
    if d.issuer.trim_end_matches('/') != conn.issuer.trim_end_matches('/') {
        eprintln!(
            "error: --state {} holds a deferral of issuer {}; pass --issuer {} (now {})",
            path.display(),
            safe(&d.issuer),
            safe(&d.issuer),
            safe(&conn.issuer)
        );
        return Err(USAGE);
    }
    if d.client_id != conn.client_id {
        eprintln!(
            "error: --state {} holds a deferral of client {}; pass --client-id {}",
            path.display(),
            safe(&d.client_id),
            safe(&d.client_id)
        );
        return Err(USAGE);
    }
    Ok(d)
}

/// Removes the state file of a finished deferral (nothing to resume).
pub(super) fn forget_state(path: Option<&Path>) {
    if let Some(path) = path {
        match std::fs::remove_file(path) {
            Ok(()) => eprintln!("removed {} (the deferral is finished)", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("warning: cannot remove {}: {e}", path.display()),
        }
    }
}

/// Whether a poll error means the deferral code is dead for good (DTR-16,
/// DTR-19), so that a saved state is useless. Other failures (e.g.
/// `invalid_client` after a secret rotation) leave it resumable.
pub(super) fn finishes_deferral(code: &ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::AccessDenied
            | ErrorCode::InvalidGrant
            | ErrorCode::ExpiredToken
            | ErrorCode::InvalidRequest
    )
}
