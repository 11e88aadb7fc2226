//! The volume holder's FUSE request loop: our own, over a /dev/fuse descriptor that the
//! holder's keeper (`datapath::keeper`) keeps open as well. A server that dies or re-executes
//! then leaves the requests it had read queued in the kernel rather than failed; its successor
//! asks the kernel to send them again and answers them. (fuser's session insists on the INIT
//! handshake, which a successor never sees; fuser still does the first INIT, see [`mount`].)
//!
//! What this relies on in the kernel (fs/fuse/dev.c; include/uapi/linux/fuse.h):
//! 1. A request read from a /dev/fuse *file* stays on that file's processing list until it is
//!    answered. The list is failed (ECONNABORTED) only when the file is released, i.e. its
//!    last descriptor is closed. So every serving thread reads from the one file the keeper
//!    holds too, never from a `FUSE_DEV_IOC_CLONE` clone (a file of its own, released with
//!    this process).
//! 2. `FUSE_NOTIFY_RESEND` (notification code 7, Linux >= 6.9; the kernel announces it with
//!    the init flag `FUSE_HAS_RESEND`, 1 << 39) moves every request on every processing list
//!    of the connection back to the input queue, with bit 63 of its id set; the answer
//!    carries that id as read.
//! 3. An answer to a request that is no longer there fails with ENOENT (it was interrupted,
//!    or resent): harmless, the request is answered elsewhere.
//! 4. read() fails with ENODEV once the filesystem is unmounted or the connection aborted.
//! 5. A write of a whole answer is one syscall: the kernel sees all of it or none of it.

use super::{errno_of, BlockIo, FILE_NAME, MAX_IO};
use crate::error::{Error, Result};
use rustix::fd::{AsFd, OwnedFd};
use rustix::io::Errno;
use std::io::IoSlice;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

const IN_HEADER: usize = 40;
const OUT_HEADER: usize = 16;
/// fuse_notify_code FUSE_NOTIFY_RESEND (Linux 6.9).
const NOTIFY_RESEND: i32 = 7;
/// Bit 63 of a resent request's id (FUSE_UNIQUE_RESEND, fact 2).
const UNIQUE_RESEND: u64 = 1 << 63;
/// Init flag FUSE_HAS_RESEND: the kernel understands [`NOTIFY_RESEND`].
pub const HAS_RESEND: u64 = 1 << 39;
/// Room for the largest request: a write of [`MAX_IO`] bytes and its headers.
const BUF_SIZE: usize = MAX_IO as usize + 4096;

const ROOT: u64 = 1;
const FILE: u64 = 2;
const FATTR_SIZE: u32 = 1 << 3;
const DT_DIR: u32 = 4;
const DT_REG: u32 = 8;

/// Opcodes (fuse_opcode) this server answers; others get ENOSYS.
mod op {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FSYNC: u32 = 20;
    pub const FLUSH: u32 = 25;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const FSYNCDIR: u32 = 30;
    pub const INTERRUPT: u32 = 36;
    pub const DESTROY: u32 = 38;
    pub const BATCH_FORGET: u32 = 42;
}

/// What the first INIT told us.
#[derive(Clone, Copy, Debug)]
pub struct Negotiated {
    pub resend: bool,
}

/// fuser's filesystem for the INIT handshake only (the same settings as [`super::VolumeFs`]).
struct InitOnly(std::sync::mpsc::Sender<Negotiated>);

impl fuser::Filesystem for InitOnly {
    fn init(
        &mut self,
        _req: &fuser::Request,
        config: &mut fuser::KernelConfig,
    ) -> std::io::Result<()> {
        super::configure(config);
        let resend = config.capabilities().bits() & HAS_RESEND != 0;
        let _ = self.0.send(Negotiated { resend });
        Ok(())
    }
}

/// Mount a FUSE filesystem at `dir` (mount(2): the holder runs as root) and answer its INIT;
/// returns the /dev/fuse descriptor, ready for [`serve`].
pub fn mount(dir: &Path) -> Result<(OwnedFd, Negotiated)> {
    use rustix::fs::{Mode, OFlags};
    use rustix::mount::MountFlags;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("mkdir {}", dir.display()), e))?;
    let fd = rustix::fs::open("/dev/fuse", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::io("open /dev/fuse", e.into()))?;
    let data = format!(
        "fd={},rootmode=40000,user_id={},group_id={}",
        rustix::fd::AsRawFd::as_raw_fd(&fd),
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw()
    );
    let data = std::ffi::CString::new(data).map_err(|e| Error::Internal(e.to_string()))?;
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOATIME;
    rustix::mount::mount("strongroom", dir, "fuse.volume", flags, data.as_c_str())
        .map_err(|e| Error::io(format!("FUSE mount at {}", dir.display()), e.into()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let dup = fd.try_clone().map_err(|e| Error::io("dup /dev/fuse", e))?;
    // The handshake reads INIT and answers it; dropping the session closes only its copy.
    let session = fuser::Session::from_fd(
        InitOnly(tx),
        dup,
        fuser::SessionACL::All,
        fuser::Config::default(),
    );
    let negotiated = session.ok().and_then(|_| rx.try_recv().ok());
    match negotiated {
        Some(n) => Ok((fd, n)),
        None => {
            let _ = rustix::mount::unmount(dir, rustix::mount::UnmountFlags::DETACH);
            Err(Error::Internal(format!(
                "FUSE INIT at {} failed",
                dir.display()
            )))
        }
    }
}

/// Ask the kernel to send again every request a dead predecessor had read (fact 2).
pub fn resend(fd: &OwnedFd) -> Result<()> {
    let mut h = [0u8; OUT_HEADER];
    h[0..4].copy_from_slice(&(OUT_HEADER as u32).to_ne_bytes());
    h[4..8].copy_from_slice(&NOTIFY_RESEND.to_ne_bytes());
    rustix::io::write(fd, &h)
        .map(|_| ())
        .map_err(|e| Error::io("FUSE_NOTIFY_RESEND (needs Linux 6.9)", e.into()))
}

/// Serve the `volume` file from `io` on `threads` threads until the filesystem is
/// unmounted (fact 4).
pub fn serve<I: BlockIo>(fd: Arc<OwnedFd>, io: Arc<I>, threads: usize) {
    let server = Arc::new(Server {
        fd,
        io,
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        started: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        resent: AtomicBool::new(false),
    });
    let handles: Vec<_> = (0..threads.max(1))
        .filter_map(|i| {
            let s = server.clone();
            std::thread::Builder::new()
                .name(format!("fuse-{i}"))
                .spawn(move || s.run())
                .ok()
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    // The session is over: make what the kernel wrote durable before the caller closes the
    // store (a file-backed store's close does not sync; a writer that never sent FSYNC,
    // such as a raw block device user, would otherwise depend on the page cache).
    if let Err(e) = server.io.flush() {
        tracing::warn!(error = %e, "final flush of the volume failed");
    }
}

struct Server<I: BlockIo> {
    fd: Arc<OwnedFd>,
    io: Arc<I>,
    uid: u32,
    gid: u32,
    started: u64,
    /// A resent request was seen (logged once).
    resent: AtomicBool,
}

/// The fields of a request header this server uses, and the request's body: in the server
/// thread's own buffer, which a write may use in place (its bytes are not needed after).
struct In<'a> {
    opcode: u32,
    unique: u64,
    node: u64,
    body: &'a mut [u8],
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn parse(b: &mut [u8]) -> Option<In<'_>> {
    let len = u32_at(b, 0)? as usize;
    Some(In {
        opcode: u32_at(b, 4)?,
        unique: u64_at(b, 8)?,
        node: u64_at(b, 16)?,
        body: b.get_mut(IN_HEADER..len)?,
    })
}

/// Little builder for fixed answer structs.
#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }
}

impl<I: BlockIo> Server<I> {
    fn run(&self) {
        let mut buf = Zeroizing::new(vec![0u8; BUF_SIZE]);
        let mut reads = Zeroizing::new(Vec::new());
        loop {
            match rustix::io::read(self.fd.as_fd(), &mut buf[..]) {
                Ok(n) => match buf.get_mut(..n).and_then(parse) {
                    Some(mut req) => self.dispatch(&mut req, &mut reads),
                    None => eprintln!("holder: a malformed FUSE request ({n} bytes) ignored"),
                },
                Err(Errno::NOENT | Errno::INTR | Errno::AGAIN) => {}
                Err(Errno::NODEV) => return,
                Err(e) => {
                    eprintln!("holder: reading /dev/fuse: {e}");
                    return;
                }
            }
        }
    }

    /// Send an answer: `error` is 0 or a positive errno.
    fn answer(&self, unique: u64, error: i32, parts: &[&[u8]]) {
        let len = OUT_HEADER + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut h = [0u8; OUT_HEADER];
        h[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        h[4..8].copy_from_slice(&(-error).to_ne_bytes());
        h[8..16].copy_from_slice(&unique.to_ne_bytes());
        let mut io = Vec::with_capacity(parts.len() + 1);
        io.push(IoSlice::new(&h));
        io.extend(parts.iter().map(|p| IoSlice::new(p)));
        match rustix::io::writev(self.fd.as_fd(), &io) {
            Ok(_) | Err(Errno::NOENT) => {}
            Err(e) => eprintln!("holder: answering a FUSE request: {e}"),
        }
    }

    fn error(&self, unique: u64, errno: i32) {
        self.answer(unique, errno, &[])
    }

    fn attr(&self, node: u64) -> Out {
        let (mode, nlink, size) = if node == ROOT {
            (0o040700, 2, 0)
        } else {
            (0o100600, 1, self.io.refresh())
        };
        let o = Out::default().u64(node).u64(size).u64(size.div_ceil(512));
        let o = o.u64(self.started).u64(self.started).u64(self.started);
        let o = o.u32(0).u32(0).u32(0).u32(mode).u32(nlink);
        o.u32(self.uid).u32(self.gid).u32(0).u32(4096).u32(0)
    }

    fn dispatch(&self, r: &mut In, reads: &mut Zeroizing<Vec<u8>>) {
        let u = r.unique;
        if u & UNIQUE_RESEND != 0 && !self.resent.swap(true, Ordering::Relaxed) {
            eprintln!("holder: answering requests the kernel resent");
        }
        match r.opcode {
            op::FORGET | op::BATCH_FORGET | op::INTERRUPT => {}
            op::LOOKUP => self.lookup(r),
            op::GETATTR | op::SETATTR => self.getattr(r),
            op::OPEN if r.node == FILE => self.opened(u),
            op::OPEN => self.error(u, libc::EISDIR),
            op::OPENDIR if r.node == ROOT => self.opened(u),
            op::OPENDIR => self.error(u, libc::ENOTDIR),
            op::READ => self.read(r, reads),
            op::WRITE => self.write(r),
            op::READDIR => self.readdir(r),
            op::STATFS => {
                let o = Out::default().u64(0).u64(0).u64(0).u64(0).u64(0);
                let o = o.u32(4096).u32(255).u32(4096).u32(0);
                self.answer(u, 0, &[&o.0, &[0u8; 24]])
            }
            op::FSYNC => match self.io.flush() {
                Ok(()) => self.answer(u, 0, &[]),
                Err(e) => self.error(u, errno_of(&e)),
            },
            op::RELEASE | op::RELEASEDIR | op::FLUSH | op::FSYNCDIR | op::DESTROY => {
                self.answer(u, 0, &[])
            }
            _ => self.error(u, libc::ENOSYS),
        }
    }

    fn opened(&self, unique: u64) {
        self.answer(unique, 0, &[&Out::default().u64(0).u32(0).u32(0).0])
    }

    fn lookup(&self, r: &In) {
        let name = r.body.split(|b| *b == 0).next().unwrap_or_default();
        if r.node != ROOT || name != FILE_NAME.as_bytes() {
            return self.error(r.unique, libc::ENOENT);
        }
        // node, generation, entry and attribute validity (0: no caching, sizes change).
        let head = Out::default().u64(FILE).u64(0).u64(0).u64(0).u32(0).u32(0);
        self.answer(r.unique, 0, &[&head.0, &self.attr(FILE).0])
    }

    fn getattr(&self, r: &In) {
        if r.node != ROOT && r.node != FILE {
            return self.error(r.unique, libc::ENOENT);
        }
        if r.opcode == op::SETATTR {
            // The size is the volume's: truncation is refused (one to the same size is fine).
            let valid = u32_at(r.body, 0).unwrap_or(0);
            let size = u64_at(r.body, 16).unwrap_or(0);
            if r.node != FILE || (valid & FATTR_SIZE != 0 && size != self.io.size()) {
                return self.error(r.unique, libc::EPERM);
            }
        }
        let head = Out::default().u64(0).u32(0).u32(0);
        self.answer(r.unique, 0, &[&head.0, &self.attr(r.node).0])
    }

    fn read(&self, r: &In, scratch: &mut Zeroizing<Vec<u8>>) {
        let (Some(offset), Some(size)) = (u64_at(r.body, 8), u32_at(r.body, 16)) else {
            return self.error(r.unique, libc::EINVAL);
        };
        if r.node != FILE {
            return self.error(r.unique, libc::EINVAL);
        }
        let total = self.io.size();
        if offset >= total {
            return self.answer(r.unique, 0, &[]);
        }
        let n = (size as u64).min(total - offset) as usize;
        self.io
            .read_reply(offset, n, scratch, &mut |res| match res {
                Ok(bytes) => self.answer(r.unique, 0, &[bytes]),
                Err(e) => self.error(r.unique, errno_of(&e)),
            });
    }

    /// A write, stored from the request's own buffer (encrypted there, for an encrypted
    /// volume: no second buffer, no copy).
    fn write(&self, r: &mut In) {
        let (Some(offset), Some(size)) = (u64_at(r.body, 8), u32_at(r.body, 16)) else {
            return self.error(r.unique, libc::EINVAL);
        };
        let Some(data) = r.body.get_mut(40..40 + size as usize) else {
            return self.error(r.unique, libc::EINVAL);
        };
        if r.node != FILE {
            return self.error(r.unique, libc::EINVAL);
        }
        if offset.saturating_add(data.len() as u64) > self.io.size() {
            return self.error(r.unique, libc::ENOSPC);
        }
        match self.io.write_in_place(offset, data) {
            Ok(()) => self.answer(r.unique, 0, &[&Out::default().u32(size).u32(0).0]),
            Err(e) => self.error(r.unique, errno_of(&e)),
        }
    }

    fn readdir(&self, r: &In) {
        let (Some(offset), Some(size)) = (u64_at(r.body, 8), u32_at(r.body, 16)) else {
            return self.error(r.unique, libc::EINVAL);
        };
        if r.node != ROOT {
            return self.error(r.unique, libc::ENOTDIR);
        }
        let entries = [
            (ROOT, DT_DIR, "."),
            (ROOT, DT_DIR, ".."),
            (FILE, DT_REG, FILE_NAME),
        ];
        let mut out = Vec::new();
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            let mut e = Out::default().u64(*ino).u64(i as u64 + 1);
            e = e.u32(name.len() as u32).u32(*kind);
            e.0.extend_from_slice(name.as_bytes());
            e.0.resize(e.0.len().next_multiple_of(8), 0);
            if out.len() + e.0.len() > size as usize {
                break;
            }
            out.extend_from_slice(&e.0);
        }
        self.answer(r.unique, 0, &[&out])
    }
}
