//! A volume holder is two processes that guard each other: the **server** answers FUSE
//! requests, the **keeper** only keeps the /dev/fuse descriptor and the volume key. When one
//! dies, the other starts a successor and hands it both; a server's successor makes the kernel
//! resend what the dead one had read (`fuse::lowlevel`), so the mounted filesystem sees a
//! pause, never an error. Upgrades re-execute each in turn (the new binary, the same pid).
//!
//! Invariants:
//! 1. The two are linked by a `SOCK_SEQPACKET` socket pair, the successor's end as its stdin
//!    (no other process holds either end: both are close-on-exec until given to the peer).
//!    End of file on it means the peer died or re-executed.
//! 2. The descriptor and the key pass only over that link: a `Handover` message, the
//!    descriptor by `SCM_RIGHTS`, the key in its bytes (never argv, env, or a file).
//! 3. A process that starts (or re-executes) asks with `Need` and gets a `Handover`.
//! 4. Each is guarded like the holder always was (own session, memory locked, not dumpable)
//!    and zeroizes the key it holds when it exits.

use crate::error::{Error, Result};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use strongroom_vault_client::SecretString;
use zeroize::Zeroizing;

use super::holder::{HolderCommand, LOG};

/// The largest message: a handover of a nonce and a volume key (at most 64 bytes).
const MAX_MESSAGE: usize = 1024;

/// Which half of a holder a process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Started by a mount: unlocks the volume, mounts, then serves (and starts a keeper).
    Start,
    /// A successor server: gets the descriptor and key from the keeper, resends, serves.
    Server,
    Keeper,
}

impl Role {
    /// The command-line word of a successor's role (`hold --role WORD`).
    pub fn as_arg(self) -> &'static str {
        match self {
            Role::Start => "start",
            Role::Server => "server",
            Role::Keeper => "keeper",
        }
    }
}

/// What the two say to each other.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    /// Send me the descriptor and the key (invariant 3).
    Need,
    /// Re-execute yourself (an upgrade).
    Upgrade,
    /// The filesystem is unmounted: exit.
    Bye,
}

/// What a holder holds: the /dev/fuse descriptor, the volume's nonce, its key.
pub struct Held {
    pub fuse: Arc<OwnedFd>,
    pub nonce: String,
    /// The Ceph user and key an RBD store is opened with, when they came with the request.
    pub ceph: Option<(String, SecretString)>,
    pub key: Zeroizing<Vec<u8>>,
}

/// A handover as received: what is held, and the pid of the process that sent it.
pub struct Handover {
    pub held: Held,
    pub from: u32,
}

impl Held {
    fn frame(&self) -> Zeroizing<Vec<u8>> {
        let mut f = Zeroizing::new(Vec::with_capacity(16 + self.nonce.len() + self.key.len()));
        f.push(b'H');
        f.extend_from_slice(format!("{}\n", std::process::id()).as_bytes());
        f.extend_from_slice(self.nonce.as_bytes());
        if let Some((user, key)) = &self.ceph {
            for part in [user.as_str(), key.expose()] {
                f.push(b' ');
                f.extend_from_slice(part.as_bytes());
            }
        }
        f.push(b'\n');
        f.extend_from_slice(&self.key);
        f
    }
}

fn tag(m: &Msg) -> u8 {
    match m {
        Msg::Need => b'N',
        Msg::Upgrade => b'U',
        Msg::Bye => b'B',
    }
}

/// Send a one-byte message.
pub fn send(link: BorrowedFd, m: Msg) -> Result<()> {
    rustix::net::send(link, &[tag(&m)], SendFlags::NOSIGNAL)
        .map(|_| ())
        .map_err(|e| Error::io("holder link", e.into()))
}

/// Send the descriptor and the key (invariant 2).
pub fn hand_over(link: BorrowedFd, held: &Held) -> Result<()> {
    let frame = held.frame();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [held.fuse.as_fd()];
    control.push(SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(
        link,
        &[IoSlice::new(&frame)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .map(|_| ())
    .map_err(|e| Error::io("hand over the FUSE descriptor", e.into()))
}

/// What arrives on the link.
pub enum Received {
    Msg(Msg),
    Handover(Handover),
    /// The peer is gone (invariant 1).
    Closed,
}

/// Wait for the next message.
pub fn receive(link: BorrowedFd) -> Result<Received> {
    let mut buf = Zeroizing::new(vec![0u8; MAX_MESSAGE]);
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match rustix::net::recvmsg(link, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::CONNRESET) => return Ok(Received::Closed),
            Err(e) => return Err(Error::io("holder link", e.into())),
            Ok(r) => break r.bytes,
        }
    };
    let mut fd = None;
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = m {
            fd = fds.next();
        }
    }
    match (buf.get(..got).unwrap_or_default(), fd) {
        ([], _) => Ok(Received::Closed),
        ([b'N'], _) => Ok(Received::Msg(Msg::Need)),
        ([b'U'], _) => Ok(Received::Msg(Msg::Upgrade)),
        ([b'B'], _) => Ok(Received::Msg(Msg::Bye)),
        ([b'H', rest @ ..], Some(fuse)) => parse_handover(rest, fuse).map(Received::Handover),
        _ => Err(Error::Internal("holder link: a malformed message".into())),
    }
}

/// `pid \n nonce \n key`.
fn parse_handover(rest: &[u8], fuse: OwnedFd) -> Result<Handover> {
    let bad = || Error::Internal("holder link: a malformed handover".into());
    let mut parts = rest.splitn(3, |b| *b == b'\n');
    let (Some(pid), Some(nonce), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let from = std::str::from_utf8(pid)
        .ok()
        .and_then(|p| p.parse().ok())
        .ok_or_else(bad)?;
    let line = std::str::from_utf8(nonce).map_err(|_| bad())?;
    let mut words = line.split(' ');
    let nonce = words
        .next()
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(bad)?;
    let ceph = match (words.next(), words.next(), words.next()) {
        (None, _, _) => None,
        (Some(u), Some(k), None) => Some((u.to_owned(), SecretString::new(k))),
        _ => return Err(bad()),
    };
    let held = Held {
        fuse: Arc::new(fuse),
        nonce: nonce.to_owned(),
        ceph,
        key: Zeroizing::new(key.to_vec()),
    };
    Ok(Handover { held, from })
}

/// Ask for and wait for a handover on `link` (a successor's first step, invariant 3).
pub fn take_over(link: BorrowedFd) -> Result<Handover> {
    send(link, Msg::Need)?;
    loop {
        match receive(link)? {
            Received::Handover(h) => return Ok(h),
            Received::Msg(_) => {}
            Received::Closed => {
                return Err(Error::Internal(
                    "the holder's peer went away before handing over".into(),
                ))
            }
        }
    }
}

fn command(cmd: &HolderCommand, id: &str, role: Role, link: OwnedFd) -> Command {
    let mut c = Command::new(&cmd.program);
    c.args(&cmd.args)
        .args(["--role", role.as_arg()])
        .arg(id)
        .stdin(Stdio::from(link))
        .stdout(Stdio::null());
    c
}

fn pair() -> Result<(OwnedFd, OwnedFd)> {
    rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::io("socketpair", e.into()))
}

/// Start a successor in `role`; returns our end of its link and its pid. Its stderr goes to
/// the holder's log (appended). It is reaped by [`reap`].
pub fn spawn(
    cmd: &HolderCommand,
    dir: &std::path::Path,
    id: &str,
    role: Role,
) -> Result<(OwnedFd, u32)> {
    let (ours, theirs) = pair()?;
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join(LOG))
        .map_err(|e| Error::io("holder log", e))?;
    let child = command(cmd, id, role, theirs)
        .stderr(log)
        .spawn()
        .map_err(|e| Error::io(format!("start a holder {}", role.as_arg()), e))?;
    Ok((ours, child.id()))
}

/// Re-execute this process as `role` with the new binary at the same path, `link` as stdin.
/// Returns only on failure.
pub fn reexec(cmd: &HolderCommand, id: &str, role: Role, link: BorrowedFd) -> Error {
    match link.try_clone_to_owned() {
        Ok(l) => Error::io("re-execute the holder", command(cmd, id, role, l).exec()),
        Err(e) => Error::io("re-execute the holder", e),
    }
}

/// Reap any exited children (successors this process started), without blocking.
pub fn reap() {
    use rustix::process::WaitOptions;
    while let Ok(Some(_)) = rustix::process::wait(WaitOptions::NOHANG) {}
}

/// Whether the FUSE connection behind `fuse` is gone (unmounted or aborted): poll reports
/// POLLERR for it.
pub fn disconnected(fuse: &OwnedFd) -> bool {
    use rustix::event::{PollFd, PollFlags};
    let mut fds = [PollFd::new(fuse, PollFlags::IN)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&zero)) {
        Ok(_) => fds[0].revents().contains(PollFlags::ERR),
        Err(_) => false,
    }
}

/// The keeper's life: take over from its server, then answer successors, start a new server
/// when its server dies, re-execute on request; exit at `Bye` or when the filesystem is gone.
pub fn keep(cmd: &HolderCommand, dir: &std::path::Path, id: &str, link: OwnedFd) -> Result<()> {
    let held = take_over(link.as_fd())?.held;
    let mut link = link;
    let mut started = std::time::Instant::now();
    loop {
        reap();
        match receive(link.as_fd())? {
            Received::Msg(Msg::Need) => hand_over(link.as_fd(), &held)?,
            Received::Msg(Msg::Upgrade) => return Err(reexec(cmd, id, Role::Keeper, link.as_fd())),
            Received::Msg(Msg::Bye) => return Ok(()),
            Received::Handover(_) => {}
            Received::Closed if disconnected(&held.fuse) => return Ok(()),
            Received::Closed => {
                // A server that cannot start (e.g. its store still locked by the dead one's
                // client) is retried twice a second, not in a tight loop.
                if started.elapsed() < std::time::Duration::from_secs(1) {
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
                eprintln!("holder keeper: the server died: starting another");
                link = spawn(cmd, dir, id, Role::Server)?.0;
                started = std::time::Instant::now();
            }
        }
    }
}
