//! A holder host: a small long-lived daemon that starts and owns the volume holders on a node
//! when the CSI node plugin asks it to, so that holders survive a restart of the plugin's
//! *container* (in Kubernetes a plugin restart usually is one, and every process in the
//! container dies with it). In the chart it is a DaemonSet of its own (`updateStrategy:
//! OnDelete`, so upgrading the plugin never restarts it).
//!
//! Protocol on its unix socket (0600; the peer must have our uid): one JSON line
//! ([`HostRequest`]), then the holder's stdin frame (the nonce line and the keyslot secret),
//! then the client shuts its writing half down. The host starts the holder as the plugin
//! would (`holder::start`), gives it the frame (`holder::handshake`) and answers one JSON line
//! ([`HostAnswer`]). The secret only passes through the host's memory (locked, not dumpable,
//! zeroized), never a file, argv or env.
//!
//! Verification does not rest on pids: the plugin checks a holder by its proof of the nonce
//! (`holder::verify`); the pid the host reports is in the host's PID namespace (the plugin's
//! SO_PEERCRED shows the holder as pid 0 when it is not in its namespace).

use super::holder::{self, HolderCommand};
use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;
use strongroom_vault_client::SecretString;
use zeroize::Zeroizing;

/// The largest frame (nonce line + secret) a host accepts.
const MAX_FRAME: usize = 8192;

#[derive(Serialize, Deserialize)]
struct HostRequest {
    volume: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum HostAnswer {
    /// The holder serves; its pid in the host's PID namespace.
    Ready {
        pid: u32,
    },
    Error {
        code: ErrorKind,
        message: String,
    },
}

/// A volume id the host starts a holder for: a plain directory name under its root.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Ask the host at `socket` to start the holder of volume `id` with `nonce` and `secret`;
/// returns once it serves, with its pid in the host's namespace.
pub fn start_hosted(
    socket: &Path,
    id: &str,
    nonce: &str,
    ceph: Option<&(String, SecretString)>,
    secret: &[u8],
) -> Result<u32> {
    let unavailable = |e: std::io::Error| {
        Error::Unavailable(format!("the holder host at {}: {e}", socket.display()))
    };
    let mut s = UnixStream::connect(socket).map_err(unavailable)?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
    let head = serde_json::to_string(&HostRequest {
        volume: id.to_owned(),
    })
    .map_err(|e| Error::Internal(e.to_string()))?;
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(b"\n"))
        .and_then(|()| s.write_all(&super::holder::secret_frame(nonce, ceph, secret)))
        .map_err(unavailable)?;
    s.shutdown(std::net::Shutdown::Write).map_err(unavailable)?;
    let mut line = String::new();
    BufReader::new(s.take(64 * 1024))
        .read_line(&mut line)
        .map_err(unavailable)?;
    match serde_json::from_str::<HostAnswer>(&line) {
        Ok(HostAnswer::Ready { pid }) => Ok(pid),
        Ok(HostAnswer::Error { code, message }) => {
            Err(Error::from_kind(code, format!("holder host: {message}")))
        }
        Err(_) => Err(Error::Unavailable(format!(
            "the holder host at {} gave no answer",
            socket.display()
        ))),
    }
}

/// The host's life: serve requests on `socket` until killed, starting holders with `cmd`
/// for volumes under `root`.
pub fn run_host(socket: &Path, root: PathBuf, cmd: HolderCommand) -> Result<()> {
    holder::guard_process()?;
    if let Some(d) = socket.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io("holder host socket dir", e))?;
    }
    let _ = std::fs::remove_file(socket);
    let l = UnixListener::bind(socket).map_err(|e| Error::io("bind the holder host socket", e))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("chmod the holder host socket", e))?;
    eprintln!("holder host: serving {}", socket.display());
    for s in l.incoming().flatten() {
        let (root, cmd) = (root.clone(), cmd.clone());
        std::thread::spawn(move || answer(s, &root, &cmd));
    }
    Ok(())
}

fn answer(mut s: UnixStream, root: &Path, cmd: &HolderCommand) {
    let a = match handle(&mut s, root, cmd) {
        Ok(pid) => HostAnswer::Ready { pid },
        Err(e) => HostAnswer::Error {
            code: e.kind(),
            message: e.to_string(),
        },
    };
    if let Ok(text) = serde_json::to_string(&a) {
        let _ = writeln!(s, "{text}");
    }
}

fn handle(s: &mut UnixStream, root: &Path, cmd: &HolderCommand) -> Result<u32> {
    let cred = nix::sys::socket::getsockopt(&*s, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| Error::io("SO_PEERCRED", e.into()))?;
    if cred.uid() != rustix::process::geteuid().as_raw() {
        return Err(Error::PermissionDenied(
            "the holder host serves its own uid only".into(),
        ));
    }
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    // One fixed buffer, never reallocated (no unzeroized copies of the secret).
    let mut buf = Zeroizing::new(vec![0u8; MAX_FRAME]);
    let mut len = 0;
    loop {
        match s.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read the holder host request", e)),
        }
        if len == buf.len() {
            return Err(Error::InvalidArgument(
                "holder host request: too long".into(),
            ));
        }
    }
    let got = &buf[..len];
    let nl = got
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| Error::InvalidArgument("holder host request: no header line".into()))?;
    let req: HostRequest = serde_json::from_slice(&got[..nl])
        .map_err(|e| Error::InvalidArgument(format!("holder host request: {e}")))?;
    if !valid_id(&req.volume) {
        return Err(Error::InvalidArgument(format!(
            "holder host request: not a volume id: {:?}",
            req.volume
        )));
    }
    let rest = &got[nl + 1..];
    let nl = rest
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| Error::InvalidArgument("holder host request: no nonce line".into()))?;
    // `nonce [ceph-user ceph-key]`, as a holder's own first line.
    let line = std::str::from_utf8(&rest[..nl])
        .map_err(|_| Error::InvalidArgument("holder host request: the nonce is not hex".into()))?;
    let mut words = line.split(' ');
    let nonce = words.next().unwrap_or_default();
    let ceph = match (words.next(), words.next(), words.next()) {
        (None, _, _) => None,
        (Some(u), Some(k), None) => Some((u.to_owned(), SecretString::new(k))),
        _ => {
            return Err(Error::InvalidArgument(
                "holder host request: the nonce line is not `nonce [user key]`".into(),
            ))
        }
    };
    let dir = root.join(&req.volume);
    if !dir.is_dir() {
        return Err(Error::NotFound(format!("volume {}", req.volume)));
    }
    let child = holder::start(cmd, &dir, &req.volume)?;
    let pid = child.id();
    holder::handshake(
        child,
        &dir,
        &req.volume,
        nonce,
        ceph.as_ref(),
        &rest[nl + 1..],
    )?;
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_volume_ids_are_hosted() {
        for ok in ["pvc-1", "v1", "a.b_c"] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in [
            "",
            "..",
            ".hidden",
            "a/b",
            "../etc",
            "a b",
            &"x".repeat(200),
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
