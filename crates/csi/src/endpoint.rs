//! The CSI endpoint: `unix:///path` (sidecar style), `unix:/path` (csi-sanity style) or a
//! bare absolute path; bound with a stale socket removed and restrictive permissions.

use crate::errors::CsiError;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;

/// The socket path of an endpoint string.
pub fn parse(endpoint: &str) -> Result<PathBuf, CsiError> {
    let path = if let Some(rest) = endpoint.strip_prefix("unix://") {
        rest
    } else if let Some(rest) = endpoint.strip_prefix("unix:") {
        rest
    } else if endpoint.contains("://") {
        return Err(CsiError::Invalid(format!(
            "endpoint {endpoint:?}: only unix sockets are supported (unix:///path)"
        )));
    } else {
        endpoint
    };
    if !path.starts_with('/') || path.len() < 2 {
        return Err(CsiError::Invalid(format!(
            "endpoint {endpoint:?}: expected unix:///absolute/path"
        )));
    }
    Ok(PathBuf::from(path))
}

/// Bind `path`: create its directory, remove a stale socket left by a previous run (never a
/// file of another kind), listen, then set `mode` (0600 or 0660 for sidecars in a group).
pub fn bind(path: &Path, mode: u32) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_forms() {
        assert_eq!(
            parse("unix:///csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert_eq!(
            parse("unix:/tmp/csi.sock").unwrap(),
            PathBuf::from("/tmp/csi.sock")
        );
        assert_eq!(
            parse("/run/csi.sock").unwrap(),
            PathBuf::from("/run/csi.sock")
        );
        for bad in [
            "tcp://0.0.0.0:10000",
            "unix://relative/x",
            "csi.sock",
            "unix:",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn stale_socket_is_replaced_and_mode_set() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/csi.sock");
        let l1 = bind(&p, 0o600).unwrap();
        drop(l1); // the file stays behind, as after a crash
        assert!(p.exists());
        let _l2 = bind(&p, 0o660).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
    }

    #[tokio::test]
    async fn refuses_to_remove_a_regular_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("csi.sock");
        std::fs::write(&p, "data").unwrap();
        assert!(bind(&p, 0o600).is_err());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "data");
    }
}
