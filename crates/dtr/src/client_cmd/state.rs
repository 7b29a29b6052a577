//! `--state FILE`: the saved deferral (JSON, mode 0600, it holds the code)
//! that lets an interrupted run be resumed or cancelled, and its removal
//! once the deferral is finished.

use super::output::safe;
use super::{ConnectionArgs, USAGE};
use dtr_client::{Deferral, ErrorCode, FirstPollParams};
use std::io::Write;
use std::path::Path;

/// The member of a state file holding the parameters the first poll still
/// owes (the PKCE `code_verifier` and `redirect_uri` of a deferral at the
/// authorization endpoint). A `Deferral` ignores it when read.
const FIRST_POLL: &str = "first_poll";

/// Writes the deferral to `path` readable by its owner only (it holds the
/// code, DTR-29), never over an existing file.
pub(super) fn save_state(path: &Path, d: &Deferral) -> std::io::Result<()> {
    save_state_with(path, d, &FirstPollParams::new())
}

/// [`save_state`] with the parameters the first poll still owes, which
/// are as secret as the code.
pub(super) fn save_state_with(
    path: &Path,
    d: &Deferral,
    first_poll: &FirstPollParams,
) -> std::io::Result<()> {
    write_new(path, &state_json(d, first_poll)?)
}

/// Replaces the state of a deferral whose first poll has been sent by one
/// without the first poll's parameters: a resumed run must never present
/// the verifier again (the server refuses it and ends the deferral). The
/// new file is written beside the old one and renamed over it, so a crash
/// leaves one or the other, never half of one.
pub(super) fn forget_first_poll(path: &Path, d: &Deferral) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, &state_json(d, &FirstPollParams::new())?)?;
    std::fs::rename(&tmp, path)
}

/// The parameters the first poll of a saved deferral still owes (none for
/// most deferrals).
pub(super) fn load_first_poll(path: &Path) -> Result<FirstPollParams, u8> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("error: --state {}: {e}", path.display());
        USAGE
    })?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        eprintln!("error: --state {}: {e}", path.display());
        USAGE
    })?;
    match v.get(FIRST_POLL) {
        None => Ok(FirstPollParams::new()),
        Some(p) => serde_json::from_value(p.clone()).map_err(|e| {
            eprintln!(
                "error: --state {}: {FIRST_POLL} is malformed: {e}",
                path.display()
            );
            USAGE
        }),
    }
}

fn state_json(d: &Deferral, first_poll: &FirstPollParams) -> std::io::Result<String> {
    let mut v = serde_json::to_value(d).map_err(std::io::Error::other)?;
    if let (false, Some(obj)) = (first_poll.is_empty(), v.as_object_mut()) {
        obj.insert(
            FIRST_POLL.into(),
            serde_json::to_value(first_poll).map_err(std::io::Error::other)?,
        );
    }
    serde_json::to_string_pretty(&v).map_err(std::io::Error::other)
}

fn write_new(path: &Path, json: &str) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use dtr_client::DeferredResponse;

    fn deferral() -> Deferral {
        Deferral::from_response(
            DeferredResponse {
                error: ErrorCode::AuthorizationPending,
                deferral_code: "DC".into(),
                expires_in: 60,
                interval: 5,
                interaction_uri: None,
                error_description: None,
            },
            0,
            "http://127.0.0.1:8080",
            "svc",
        )
    }

    #[test]
    fn the_owed_first_poll_is_saved_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let first = FirstPollParams::new()
            .with("code_verifier", "VERIFIER")
            .with("redirect_uri", "http://127.0.0.1:1/callback");
        save_state_with(&path, &deferral(), &first).unwrap();
        // Never over an existing file.
        assert!(save_state(&path, &deferral()).is_err());
        let conn = super::super::tests::conn(Some("s"), None);
        assert_eq!(load_state(&path, &conn).unwrap(), deferral());
        assert_eq!(load_first_poll(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        forget_first_poll(&path, &deferral()).unwrap();
        assert!(load_first_poll(&path).unwrap().is_empty());
        assert!(!std::fs::read_to_string(&path).unwrap().contains("VERIFIER"));
        assert_eq!(load_state(&path, &conn).unwrap(), deferral());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
