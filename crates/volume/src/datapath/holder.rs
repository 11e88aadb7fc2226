//! Volume holders: the userspace data path's FUSE server in a process of its own, one per
//! volume, so that the process that mounted the volume (the CSI node plugin, `strongroom
//! volume mount`) can die or be upgraded without the mounted filesystem seeing an error.
//!
//! * Started by [`start`] and [`handshake`] (the mounting process, holding the volume's
//!   lock) as `<program> <args...> <volume id>`. It makes a session of its own. On its stdin
//!   it gets a per-volume nonce (one line of hex; for an RBD volume whose Ceph key came from
//!   a request, followed on that line by the Ceph user and key), then the keyslot secret,
//!   never in argv or env. On its stdout it answers one JSON line ([`Answer`]); its stderr goes to
//!   `<dir>/holder.log`.
//! * The holder ([`run`]) locks its memory (`mlockall`, pages locked as they are touched)
//!   and makes itself non-dumpable (no core file, no ptrace by other users). It unlocks the
//!   LUKS2 header with the secret (no KMS call: the spawner authorized), serves the FUSE file
//!   at `<dir>/fuse` and answers its identity (volume id, nonce) on `<dir>/holder.sock`
//!   (0600). It exits when teardown unmounts the FUSE file, zeroizing the volume key.
//! * A restarted plugin re-adopts a holder only after [`verify`]: the socket's peer is the
//!   recorded pid with our uid, and it names the volume and the nonce recorded in the
//!   volume's runtime record. Anything else is stale and is torn down.

use super::fuse::{self, CryptIo};
use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use strongroom_vault_client::SecretString;
use zeroize::Zeroizing;

pub const SOCKET: &str = "holder.sock";
pub const LOG: &str = "holder.log";
/// The longest secret a holder reads (keyslot secrets are 32-64 bytes).
const MAX_SECRET: usize = 4096;

/// How holders are started: `program args... <volume id>` (for the strongroom binary,
/// `strongroom volume --root <root> hold`).
#[derive(Clone, Debug)]
pub struct HolderCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// The holder's one-line answer on its stdout.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Ready,
    Error { code: ErrorKind, message: String },
}

/// What a holder says on its socket.
#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct Identity {
    volume: String,
    nonce: String,
}

/// A fresh per-volume nonce (hex).
pub fn new_nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Start the holder of volume `id` whose directory is `dir`. It waits for [`handshake`]: the
/// caller records its pid first, so a crash in between leaves a holder that teardown knows
/// (one that never gets its secret exits at once, having mounted nothing).
pub fn start(cmd: &HolderCommand, dir: &Path, id: &str) -> Result<Child> {
    let log = std::fs::File::create(dir.join(LOG)).map_err(|e| Error::io("holder log", e))?;
    Command::new(&cmd.program)
        .args(&cmd.args)
        .arg(id)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| Error::io(format!("start the holder {}", cmd.program.display()), e))
}

/// Give a [`start`]ed holder its nonce and secret; returns once it serves. A holder that
/// cannot deliver its answer (its starter died) exits and unmounts what it mounted.
pub fn handshake(
    mut child: Child,
    dir: &Path,
    id: &str,
    nonce: &str,
    ceph: Option<&(String, SecretString)>,
    secret: &[u8],
) -> Result<()> {
    if let Some(mut stdin) = child.stdin.take() {
        let mut frame = Zeroizing::new(Vec::with_capacity(MAX_SECRET + 512));
        frame.extend_from_slice(nonce.as_bytes());
        if let Some((user, key)) = ceph {
            for part in [user.as_str(), key.expose()] {
                frame.push(b' ');
                frame.extend_from_slice(part.as_bytes());
            }
        }
        frame.push(b'\n');
        frame.extend_from_slice(secret);
        // A holder that died early shows in its answer (or its log) below.
        let _ = stdin.write_all(&frame);
    }
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    match serde_json::from_str::<Answer>(&line) {
        Ok(Answer::Ready) => {
            // Reaped when it exits (at teardown), so it never lingers as a zombie.
            std::thread::spawn(move || child.wait());
            Ok(())
        }
        Ok(Answer::Error { code, message }) => {
            let _ = child.wait();
            Err(Error::from_kind(code, format!("volume holder: {message}")))
        }
        Err(_) => {
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.join(LOG)).unwrap_or_default();
            Err(Error::Command(format!(
                "the volume holder of {id} failed: {}",
                log.trim()
            )))
        }
    }
}

/// Whether the holder recorded as (`pid`, `nonce`) serves volume `id` from `dir`.
pub fn verify(dir: &Path, id: &str, pid: u32, nonce: &str) -> bool {
    let Ok(s) = UnixStream::connect(dir.join(SOCKET)) else {
        return false;
    };
    let Ok(cred) = rustix::net::sockopt::socket_peercred(&s) else {
        return false;
    };
    if cred.pid.as_raw_nonzero().get() as u32 != pid || cred.uid != rustix::process::geteuid() {
        return false;
    }
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    if BufReader::new(s.take(1024)).read_line(&mut line).is_err() {
        return false;
    }
    let want = Identity {
        volume: id.to_owned(),
        nonce: nonce.to_owned(),
    };
    serde_json::from_str::<Identity>(&line).is_ok_and(|got| got == want)
}

/// The holder's own guards: a session of its own, memory locked, not dumpable.
fn guard_process() -> Result<()> {
    let _ = rustix::process::setsid(); // already a session leader: fine
                                       // ONFAULT: pages are locked as they are touched (the key, the buffers), without reading
                                       // the whole executable in or populating every thread stack up front.
    use rustix::mm::MlockAllFlags as F;
    rustix::mm::mlockall(F::CURRENT | F::FUTURE | F::ONFAULT)
        .map_err(|e| Error::io("mlockall (the holder keeps the volume key)", e.into()))?;
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| Error::io("prctl(PR_SET_DUMPABLE)", e.into()))
}

/// A Ceph user and its key, as the spawner got them.
type CephKey = Option<(String, SecretString)>;

/// Nonce line (with the Ceph user and key, if any), then the secret, from `input` (the
/// spawner's pipe).
fn read_frame(input: &mut dyn Read) -> Result<(String, CephKey, Zeroizing<Vec<u8>>)> {
    // One fixed buffer, never reallocated (no unzeroized copies left behind).
    let mut buf = Zeroizing::new(vec![0u8; MAX_SECRET + 512]);
    let mut len = 0;
    loop {
        match input.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read the holder's secret", e)),
        }
        if len == buf.len() {
            return Err(Error::InvalidArgument("holder input: too long".into()));
        }
    }
    buf.truncate(len);
    let nl = buf
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| Error::InvalidArgument("holder input: no nonce line".into()))?;
    let line = std::str::from_utf8(&buf[..nl])
        .map_err(|_| Error::InvalidArgument("holder input: the first line is not text".into()))?;
    let mut parts = line.split(' ');
    let nonce = parts
        .next()
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| Error::InvalidArgument("holder input: the nonce is not hex".into()))?
        .to_owned();
    let ceph = match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => None,
        (Some(u), Some(k), None) if !u.is_empty() && !k.is_empty() => {
            Some((u.to_owned(), SecretString::new(k)))
        }
        _ => {
            return Err(Error::InvalidArgument(
                "holder input: the first line is not `nonce [user key]`".into(),
            ))
        }
    };
    let secret = Zeroizing::new(buf[nl + 1..].to_vec());
    if secret.is_empty() {
        return Err(Error::InvalidArgument("holder input: no secret".into()));
    }
    Ok((nonce, ceph, secret))
}

/// Answer identity requests on `<dir>/holder.sock` until the process exits.
fn listen(dir: &Path, id: &str, nonce: &str) -> Result<()> {
    let path = dir.join(SOCKET);
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).map_err(|e| Error::io("bind the holder socket", e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("chmod the holder socket", e))?;
    let line = serde_json::to_string(&Identity {
        volume: id.to_owned(),
        nonce: nonce.to_owned(),
    })
    .map_err(|e| Error::Internal(e.to_string()))?;
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = writeln!(s, "{line}");
        }
    });
    Ok(())
}

/// The holder process's body: read the frame, open the volume with `open` (the secret in,
/// the decrypting I/O out), serve until unmounted. `answer` gets the one-line [`Answer`].
pub fn run(
    dir: &Path,
    id: &str,
    input: &mut dyn Read,
    answer: &mut dyn Write,
    open: impl FnOnce(&[u8]) -> Result<CryptIo>,
) -> Result<()> {
    let started = (|| -> Result<(fuser::BackgroundSession, PathBuf)> {
        guard_process()?;
        let (nonce, ceph, secret) = read_frame(input)?;
        if let Some((user, key)) = ceph {
            crate::store_rbd::provide_ceph_key(&user, key);
        }
        let io = open(&secret)?;
        drop(secret);
        let fuse_dir = dir.join("fuse");
        let session = fuse::spawn(Arc::new(io), &fuse_dir)?;
        listen(dir, id, &nonce)?;
        Ok((session, fuse_dir))
    })();
    let reply = match &started {
        Ok(_) => Answer::Ready,
        Err(e) => Answer::Error {
            code: e.kind(),
            message: e.to_string(),
        },
    };
    let text = serde_json::to_string(&reply).map_err(|e| Error::Internal(e.to_string()))?;
    writeln!(answer, "{text}").map_err(|e| Error::io("holder answer", e))?;
    answer.flush().map_err(|e| Error::io("holder answer", e))?;
    let (session, fuse_dir) = started?;
    fuse::serve_until_unmounted(session, &fuse_dir);
    let _ = std::fs::remove_file(dir.join(SOCKET));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_checked() {
        let (n, c, s) = read_frame(&mut &b"abc123\nsecret-bytes"[..]).unwrap();
        assert_eq!(n, "abc123");
        assert!(c.is_none());
        assert_eq!(&s[..], b"secret-bytes");
        let (_, c, s) = read_frame(&mut &b"abc123 csi QUJD\n\n\0x"[..]).unwrap();
        let (u, k) = c.unwrap();
        assert_eq!((u.as_str(), k.expose()), ("csi", "QUJD"));
        assert_eq!(&s[..], b"\n\0x");
        for bad in [
            &b"no newline"[..],
            b"\nsecret",
            b"nothex!\nsecret",
            b"abcd\n",
            b"abcd csi\nsecret",
            b"abcd csi key more\nsecret",
        ] {
            assert!(read_frame(&mut &bad[..]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_socket_of_another_process_or_nonce_is_not_adopted() {
        let d = tempfile::tempdir().unwrap();
        assert!(
            !verify(d.path(), "v", std::process::id(), "00"),
            "no socket"
        );
        listen(d.path(), "v", "00ff").unwrap();
        let me = std::process::id();
        assert!(verify(d.path(), "v", me, "00ff"));
        assert!(!verify(d.path(), "v", me, "00fe"), "another nonce");
        assert!(!verify(d.path(), "w", me, "00ff"), "another volume");
        assert!(!verify(d.path(), "v", me + 1, "00ff"), "another pid");
    }
}
