//! The DPoP key (RFC 9449) of `--dpop-key FILE` or `--dpop`.

use super::{ConnectionArgs, USAGE};
use dtr_client::DpopKey;
use std::path::Path;

/// The DPoP key of `--dpop-key FILE` (loaded, or generated and saved when
/// the file does not exist) or `--dpop` (generated for this run).
pub(super) fn dpop_key(conn: &ConnectionArgs) -> Result<Option<DpopKey>, u8> {
    if conn.dpop {
        return Ok(Some(DpopKey::generate()));
    }
    let Some(path) = &conn.dpop_key else {
        return Ok(None);
    };
    if path.exists() {
        return DpopKey::from_pem_file(path).map(Some).map_err(|e| {
            eprintln!("error: --dpop-key: {e}");
            USAGE
        });
    }
    let key = DpopKey::generate();
    match save_private_key(path, &key) {
        Ok(()) => {
            eprintln!(
                "generated a new DPoP key in {} (thumbprint {})",
                path.display(),
                key.thumbprint()
            );
            Ok(Some(key))
        }
        Err(e) => {
            eprintln!("error: --dpop-key: cannot write {}: {e}", path.display());
            Err(USAGE)
        }
    }
}

/// Writes a new key file readable by its owner only; never overwrites an
/// existing file (another process may have just created it).
fn save_private_key(path: &Path, key: &DpopKey) -> std::io::Result<()> {
    use std::io::Write;
    let pem = key
        .to_pkcs8_pem()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_cmd::tests::conn;

    #[test]
    fn dpop_key_file_is_created_private_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dpop.pem");
        let mut c = conn(None, None);
        c.dpop_key = Some(path.clone());
        let first = dpop_key(&c).unwrap().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = dpop_key(&c).unwrap().unwrap();
        assert_eq!(again.thumbprint(), first.thumbprint());
        std::fs::write(&path, "not a key").unwrap();
        assert_eq!(dpop_key(&c).err(), Some(USAGE));
        let mut c = conn(None, None);
        c.dpop = true;
        assert!(dpop_key(&c).unwrap().is_some());
        assert!(dpop_key(&conn(None, None)).unwrap().is_none());
    }
}
