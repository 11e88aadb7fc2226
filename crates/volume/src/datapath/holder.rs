//! Volume holders: the userspace data path's FUSE server in processes of its own, per
//! volume, so that the process that mounted the volume (the CSI node plugin, `strongroom
//! volume mount`) can die or be upgraded without the mounted filesystem seeing an error, and
//! so can the holder's own processes (a server and its keeper, `datapath::keeper`).
//!
//! * Started by [`start`] and [`handshake`] (the mounting process, holding the volume's
//!   lock) as `<program> <args...> <volume id>`. On its stdin it gets a per-volume nonce (one
//!   line of hex; for an RBD volume whose Ceph key came from a request, followed on that line
//!   by the Ceph user and key, which its successors get in handovers too), then the keyslot
//!   secret, never in argv or env. On its stdout it answers
//!   one JSON line ([`Answer`]); its stderr (and its successors') goes to `<dir>/holder.log`.
//! * The first server ([`run_start`]) locks its memory (`mlockall`, pages locked as they are
//!   touched), makes itself non-dumpable (no core file, no ptrace by other users) and a
//!   session of its own. It unlocks the LUKS2 header with the secret (no KMS call: the
//!   spawner authorized), mounts the FUSE file at `<dir>/fuse`, starts its keeper, serves,
//!   and answers on `<dir>/holder.sock` (0600). Server and keeper exit when teardown unmounts
//!   the FUSE file, zeroizing the volume key.
//! * A restarted plugin re-adopts a holder only after [`verify`]: the socket's peer has our
//!   uid and proves that it knows the nonce recorded in the volume's runtime record (an
//!   HMAC of a fresh challenge; the nonce itself never crosses the socket). Pids are not
//!   proof: they change as servers and keepers are replaced, and a holder in another PID
//!   namespace (a holder host) shows as pid 0. Anything else is stale and is torn down.

use super::fuse::{self, lowlevel, CryptIo};
use super::keeper::{self, Handover, Held, Msg, Received, Role};
use crate::error::{Error, ErrorKind, Result};
use hmac::{Hmac, Mac};
use rustix::fd::{AsFd, OwnedFd};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strongroom_vault_client::SecretString;
use zeroize::{Zeroize, Zeroizing};

pub const SOCKET: &str = "holder.sock";

/// The longest path a unix socket address holds (`sun_path`, with its terminating NUL).
const SUN_PATH_MAX: usize = 107;

/// Where the holder of the volume in `dir` answers: `<dir>/holder.sock`, or, when that path
/// is too long for a socket address (an RBD volume's id carries its location and is long),
/// `<root>/.holders/<hash of the id>.sock` beside the volumes.
pub fn socket_path(dir: &Path) -> PathBuf {
    let p = dir.join(SOCKET);
    if p.as_os_str().len() <= SUN_PATH_MAX {
        return p;
    }
    let root = dir.parent().unwrap_or(dir);
    let id = dir.file_name().unwrap_or_default();
    let h = <Sha256 as sha2::Digest>::digest(id.as_encoded_bytes());
    root.join(".holders")
        .join(format!("{}.sock", hex::encode(&h[..12])))
}
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

/// Where the holders of userspace data paths come from.
#[derive(Clone, Debug)]
pub enum HolderLauncher {
    /// Started by the mounting process itself (they outlive it as a process, not a
    /// container: they are its children there).
    Spawn(HolderCommand),
    /// Started by the holder host listening on this socket (`datapath::holder_host`).
    Host(PathBuf),
}

/// The holder's one-line answer on its stdout.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Ready,
    Error { code: ErrorKind, message: String },
}

/// A fresh per-volume nonce (hex).
/// What a holder reads first (from its starter or the holder host): `nonce[ user key]\n`
/// then the keyslot secret, in one zeroized buffer.
pub(super) fn secret_frame(
    nonce: &str,
    ceph: Option<&(String, SecretString)>,
    secret: &[u8],
) -> Zeroizing<Vec<u8>> {
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
    frame
}

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
        // A holder that died early shows in its answer (or its log) below.
        let _ = stdin.write_all(&secret_frame(nonce, ceph, secret));
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

/// What is asked on a holder's socket (one JSON line; one answer line).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Request {
    /// Prove knowledge of the volume's nonce: HMAC-SHA256 under it of the challenge.
    Prove { challenge: String },
    /// Re-execute the keeper, then the server, from the program's path (an upgrade).
    Upgrade,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Response {
    Proof {
        volume: String,
        proof: String,
        #[serde(flatten)]
        pids: HolderPids,
    },
    Upgrading,
}

/// The two processes of a holder, as it reports them (pids in its own PID namespace).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderPids {
    pub server: u32,
    pub keeper: u32,
}

/// The proof for `challenge`: HMAC-SHA256 keyed with the nonce over a label, the volume id
/// and the challenge.
fn mac(nonce: &str, id: &str, challenge: &[u8]) -> Option<Hmac<Sha256>> {
    let mut m = Hmac::<Sha256>::new_from_slice(nonce.as_bytes()).ok()?;
    m.update(b"strongroom volume holder\0");
    m.update(id.as_bytes());
    m.update(b"\0");
    m.update(challenge);
    Some(m)
}

/// Ask the holder in `dir`; the answer and the peer's (uid, pid). A successor binds the socket
/// again within moments of a killed or upgraded server: connecting is retried for a while.
fn ask(dir: &Path, req: &Request) -> Option<(Response, u32, i32)> {
    let mut s = None;
    for attempt in 0..50 {
        match UnixStream::connect(socket_path(dir)) {
            Ok(c) => {
                s = Some(c);
                break;
            }
            // Bound but not listened on yet, or between a successor's unlink and bind.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused || attempt < 3 => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(_) => return None,
        }
    }
    let mut s = s?;
    let cred = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let line = serde_json::to_string(req).ok()?;
    writeln!(s, "{line}").ok()?;
    let mut answer = String::new();
    BufReader::new(s.take(4096)).read_line(&mut answer).ok()?;
    let r = serde_json::from_str(&answer).ok()?;
    Some((r, cred.uid(), cred.pid()))
}

/// The holder serving volume `id` from `dir`, if it proves to know `nonce` (recorded when it
/// was started) and runs with our uid. Its pid is no proof: it changes when a server or keeper
/// is replaced, and a holder in another PID namespace shows as pid 0. A peer in ours must be
/// the server it says it is.
pub fn verify(dir: &Path, id: &str, nonce: &str) -> Option<HolderPids> {
    let challenge: [u8; 32] = rand::random();
    let req = Request::Prove {
        challenge: hex::encode(challenge),
    };
    let (answer, uid, pid) = ask(dir, &req)?;
    let Response::Proof {
        volume,
        proof,
        pids,
    } = answer
    else {
        return None;
    };
    let ours = uid == rustix::process::geteuid().as_raw() && volume == id;
    let same_pid = pid == 0 || pid as u32 == pids.server;
    let proven = mac(nonce, id, &challenge)?
        .verify_slice(&hex::decode(proof).ok()?)
        .is_ok();
    (ours && same_pid && proven).then_some(pids)
}

/// Ask the holder in `dir` to re-execute its keeper and then its server from the program's
/// path (the binary there now). Returns once it has started to; [`verify`] answers again when
/// the new server serves.
pub fn upgrade(dir: &Path) -> Result<()> {
    match ask(dir, &Request::Upgrade) {
        Some((Response::Upgrading, _, _)) => Ok(()),
        _ => Err(Error::Unavailable(format!(
            "no volume holder answers in {}",
            dir.display()
        ))),
    }
}
/// The holder's own guards: a session of its own, memory locked, not dumpable.
pub(crate) fn guard_process() -> Result<()> {
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

/// A holder process's context: how successors are started, the volume's directory and id.
#[derive(Clone)]
pub struct Holder {
    pub cmd: HolderCommand,
    pub dir: PathBuf,
    pub id: String,
}

/// What a server's threads share.
struct Shared {
    h: Holder,
    held: Mutex<Held>,
    /// A copy of the current link to the keeper (replaced when a new keeper starts); none
    /// when the kernel cannot resend requests (then a keeper could not save them).
    link: Mutex<Option<OwnedFd>>,
    keeper: Arc<AtomicU32>,
    /// Asked to upgrade: re-execute once the (re-executed) keeper holds everything again.
    upgrading: AtomicBool,
    /// The filesystem is unmounted: the keeper is told to go, not replaced.
    done: AtomicBool,
}

/// The link to a keeper and its pid.
type KeeperLink = (OwnedFd, u32);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The first server (`hold`, role start): the nonce and secret from `input`, the volume
/// opened with `open`, the FUSE file mounted, a keeper started and handed the descriptor and
/// key; then the one-line [`Answer`] on `answer`, then serve until unmounted. On a kernel
/// without `FUSE_NOTIFY_RESEND` (Linux < 6.9) no keeper is started: the requests a killed
/// server had read would hang forever rather than fail, so the holder stays one process
/// (as it was before keepers: killing it fails the mount's I/O).
pub fn run_start(
    h: Holder,
    input: &mut dyn Read,
    answer: &mut dyn Write,
    open: impl FnOnce(&[u8]) -> Result<CryptIo>,
) -> Result<()> {
    let started = (|| -> Result<(CryptIo, Held, Option<KeeperLink>)> {
        guard_process()?;
        let (nonce, ceph, secret) = read_frame(input)?;
        if let Some((user, key)) = &ceph {
            crate::store_rbd::provide_ceph_key(user, key.clone());
        }
        let io = open(&secret)?;
        drop(secret);
        let fuse_dir = h.dir.join("fuse");
        let (fuse, negotiated) = lowlevel::mount(&fuse_dir)?;
        let held = Held {
            fuse: Arc::new(fuse),
            nonce,
            ceph,
            key: io.volume_key(),
        };
        if !negotiated.resend {
            eprintln!("holder: this kernel cannot resend FUSE requests (Linux < 6.9): no keeper");
            return Ok((io, held, None));
        }
        match start_keeper(&h, &held) {
            Ok(keeper) => Ok((io, held, Some(keeper))),
            Err(e) => {
                let _ = super::fuse_unmount(&fuse_dir);
                Err(e)
            }
        }
    })();
    let reply = match &started {
        Ok(_) => Answer::Ready,
        Err(e) => Answer::Error {
            code: e.kind(),
            message: e.to_string(),
        },
    };
    let text = serde_json::to_string(&reply).map_err(|e| Error::Internal(e.to_string()))?;
    let told = writeln!(answer, "{text}").and_then(|()| answer.flush());
    let (io, held, keeper) = started?;
    if let Err(e) = told {
        // Its starter died: nobody knows this holder is ready; undo it all (a mount that
        // nobody records must not stay served).
        if let Some((link, _)) = &keeper {
            let _ = keeper::send(link.as_fd(), Msg::Bye);
        }
        let _ = super::fuse_unmount(&h.dir.join("fuse"));
        return Err(Error::io("holder answer", e));
    }
    serve(h, io, held, keeper)
}

/// A successor server (role server; `link`, its stdin, leads to the keeper): take over the
/// descriptor and key, open the volume with the key (`open`), have the kernel resend what the
/// dead server had read, serve.
pub fn run_server(
    h: Holder,
    link: OwnedFd,
    open: impl FnOnce(Zeroizing<Vec<u8>>) -> Result<CryptIo>,
) -> Result<()> {
    guard_process()?;
    let Handover { held, from } = keeper::take_over(link.as_fd())?;
    if keeper::disconnected(&held.fuse) {
        // Unmounted meanwhile: nothing to serve (and holder.sock may be another holder's).
        let _ = keeper::send(link.as_fd(), Msg::Bye);
        return Ok(());
    }
    if let Some((user, key)) = &held.ceph {
        crate::store_rbd::provide_ceph_key(user, key.clone());
    }
    let io = open(held.key.clone())?;
    lowlevel::resend(&held.fuse)?;
    eprintln!("holder: a new server took over (keeper pid {from})");
    serve(h, io, held, Some((link, from)))
}

/// A keeper (role keeper; `link`, its stdin, leads to the server).
pub fn run_keeper(h: Holder, link: OwnedFd) -> Result<()> {
    guard_process()?;
    keeper::keep(&h.cmd, &h.dir, &h.id, link)
}

/// Start a keeper and hand it what is held; returns the link to it and its pid.
fn start_keeper(h: &Holder, held: &Held) -> Result<KeeperLink> {
    let (link, pid) = keeper::spawn(&h.cmd, &h.dir, &h.id, Role::Keeper)?;
    match keeper::receive(link.as_fd())? {
        Received::Msg(Msg::Need) => keeper::hand_over(link.as_fd(), held)?,
        _ => return Err(Error::Internal("the holder's keeper did not start".into())),
    }
    Ok((link, pid))
}

/// Serve until unmounted, with the keeper at the other end of `keeper`'s link (if any).
fn serve(h: Holder, io: CryptIo, held: Held, keeper: Option<KeeperLink>) -> Result<()> {
    let fuse = held.fuse.clone();
    let (dir, id, nonce) = (h.dir.clone(), h.id.clone(), held.nonce.clone());
    let (link, copy, pid) = match keeper {
        Some((l, pid)) => {
            let copy = l
                .try_clone()
                .map_err(|e| Error::io("dup the holder link", e))?;
            (Some(l), Some(copy), pid)
        }
        None => (None, None, 0),
    };
    let s = Arc::new(Shared {
        h,
        held: Mutex::new(held),
        link: Mutex::new(copy),
        keeper: Arc::new(AtomicU32::new(pid)),
        upgrading: AtomicBool::new(false),
        done: AtomicBool::new(false),
    });
    let up = s.clone();
    listen(&dir, &id, &nonce, s.keeper.clone(), move || {
        up.upgrading.store(true, Ordering::SeqCst);
        let link = lock(&up.link);
        link.as_ref()
            .is_some_and(|l| keeper::send(l.as_fd(), Msg::Upgrade).is_ok())
    })?;
    if let Some(link) = link {
        let linked = s.clone();
        std::thread::spawn(move || link_loop(&linked, link));
    }
    lowlevel::serve(fuse, Arc::new(io), fuse::threads_for_this_machine());
    s.done.store(true, Ordering::SeqCst);
    if let Some(l) = lock(&s.link).as_ref() {
        let _ = keeper::send(l.as_fd(), Msg::Bye);
    }
    lock(&s.held).key.zeroize();
    let _ = std::fs::remove_file(socket_path(&dir));
    Ok(())
}

/// The server's side of the link: hand over on request (then re-execute, when upgrading);
/// start another keeper when the keeper dies.
fn link_loop(s: &Shared, mut link: OwnedFd) {
    loop {
        keeper::reap();
        match keeper::receive(link.as_fd()) {
            Ok(Received::Msg(Msg::Need)) => {
                if let Err(e) = keeper::hand_over(link.as_fd(), &lock(&s.held)) {
                    eprintln!("holder: handover failed: {e}");
                } else if s.upgrading.swap(false, Ordering::SeqCst) {
                    let e = keeper::reexec(&s.h.cmd, &s.h.id, Role::Server, link.as_fd());
                    eprintln!("holder: upgrade failed: {e}");
                }
            }
            Ok(Received::Msg(_) | Received::Handover(_)) => {}
            Err(e) => {
                eprintln!("holder: link: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(Received::Closed) if s.done.load(Ordering::SeqCst) => return,
            Ok(Received::Closed) => {
                eprintln!("holder: the keeper died: starting another");
                match start_keeper(&s.h, &lock(&s.held)) {
                    Ok((l, pid)) => match l.try_clone() {
                        Ok(copy) => {
                            *lock(&s.link) = Some(copy);
                            link = l;
                            s.keeper.store(pid, Ordering::SeqCst);
                        }
                        Err(e) => eprintln!("holder: dup the link: {e}"),
                    },
                    Err(e) => {
                        eprintln!("holder: starting a keeper: {e}");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        }
    }
}

/// Answer [`Request`]s on `<dir>/holder.sock` (0600) until the process exits.
fn listen(
    dir: &Path,
    id: &str,
    nonce: &str,
    keeper: Arc<AtomicU32>,
    upgrade: impl Fn() -> bool + Send + 'static,
) -> Result<()> {
    let path = socket_path(dir);
    if let Some(parent) = path.parent().filter(|p| *p != dir) {
        std::fs::create_dir_all(parent)
            .and_then(|()| std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700)))
            .map_err(|e| Error::io("make the holders' socket directory", e))?;
    }
    if path.as_os_str().len() > SUN_PATH_MAX {
        return Err(Error::InvalidArgument(format!(
            "the volumes root {} is too long for a holder's socket address ({} bytes > {SUN_PATH_MAX})",
            dir.parent().unwrap_or(dir).display(),
            path.as_os_str().len()
        )));
    }
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).map_err(|e| Error::io("bind the holder socket", e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("chmod the holder socket", e))?;
    let (id, nonce) = (id.to_owned(), Zeroizing::new(nonce.to_owned()));
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut line = String::new();
            if BufReader::new((&s).take(4096))
                .read_line(&mut line)
                .is_err()
            {
                continue;
            }
            let answer = match serde_json::from_str::<Request>(&line) {
                Ok(Request::Prove { challenge }) => hex::decode(challenge)
                    .ok()
                    .and_then(|c| mac(&nonce, &id, &c))
                    .map(|m| Response::Proof {
                        volume: id.clone(),
                        proof: hex::encode(m.finalize().into_bytes()),
                        pids: HolderPids {
                            server: std::process::id(),
                            keeper: keeper.load(Ordering::SeqCst),
                        },
                    }),
                Ok(Request::Upgrade) => upgrade().then_some(Response::Upgrading),
                Err(_) => None,
            };
            if let Some(a) = answer.and_then(|a| serde_json::to_string(&a).ok()) {
                let _ = writeln!(s, "{a}");
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_volume_dir_gets_its_socket_beside_the_volumes() {
        let short = Path::new("/var/lib/strongroom/volumes/pvc-1");
        assert_eq!(socket_path(short), short.join(SOCKET));
        let id = format!("sr1-v-0009-test-ceph-0003-rbd-0000--{}", "a".repeat(32));
        let long = Path::new("/var/lib/kubelet/plugins/strongroom/volumes").join(&id);
        let p = socket_path(&long);
        assert!(p.as_os_str().len() <= SUN_PATH_MAX, "{}", p.display());
        assert_eq!(p.parent().unwrap(), long.parent().unwrap().join(".holders"));
        // one socket per volume
        let other = long.with_file_name(id.replace('a', "b"));
        assert_ne!(socket_path(&other), p);
    }

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
    fn a_holder_proves_its_nonce_and_volume() {
        let d = tempfile::tempdir().unwrap();
        assert!(verify(d.path(), "v", "00").is_none(), "no socket");
        let keeper = Arc::new(AtomicU32::new(7));
        let upgrades = Arc::new(AtomicU32::new(0));
        let u = upgrades.clone();
        listen(d.path(), "v", "00ff", keeper, move || {
            u.fetch_add(1, Ordering::SeqCst);
            true
        })
        .unwrap();
        let me = std::process::id();
        let pids = HolderPids {
            server: me,
            keeper: 7,
        };
        assert_eq!(verify(d.path(), "v", "00ff"), Some(pids));
        assert_eq!(verify(d.path(), "v", "00fe"), None, "another nonce");
        assert_eq!(verify(d.path(), "w", "00ff"), None, "another volume");
        upgrade(d.path()).unwrap();
        assert_eq!(upgrades.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_proof_is_bound_to_nonce_volume_and_challenge() {
        let p = |n: &str, v: &str, c: &[u8]| mac(n, v, c).unwrap().finalize().into_bytes();
        assert_eq!(p("00ff", "v", b"c"), p("00ff", "v", b"c"));
        assert_ne!(p("00ff", "v", b"c"), p("00fe", "v", b"c"));
        assert_ne!(p("00ff", "v", b"c"), p("00ff", "w", b"c"));
        assert_ne!(p("00ff", "v", b"c"), p("00ff", "v", b"d"));
    }
}
