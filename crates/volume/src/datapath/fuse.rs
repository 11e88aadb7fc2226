//! The userspace data path's first half: a FUSE filesystem with one regular file, `volume`,
//! whose bytes are the decrypted LUKS2 data segment ([`CryptIo`]; the benchmark's unencrypted
//! twin serving a plain file lives in `crate::bench`, feature `bench`). A loop device is then
//! attached to that file.
//!
//! Several session threads each read requests from their own clone of the /dev/fuse
//! descriptor and serve them start to finish (see [`VolumeFs`]); the kernel matches replies to
//! requests by id, in any order. The kernel keeps several requests in flight: asynchronous
//! direct I/O (`FUSE_ASYNC_DIO`) lets the loop device's direct I/O be split into concurrent
//! FUSE requests of up to [`MAX_IO`] bytes (`max_pages`, ABI 7.28).

use crate::error::{Error, Result};
use fuser::{
    BsdFileFlags, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};
use std::cell::RefCell;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use strongroom_luks::model::Segment;
use strongroom_luks::xts::Backend;
use strongroom_luks::{BlockDevice, CryptDevice};

use super::mapping::MappedFile;
use zeroize::Zeroizing;

pub const FILE_NAME: &str = "volume";
const ROOT: INodeNo = INodeNo(1);
const FILE: INodeNo = INodeNo(2);
// No attribute caching: the size must be re-read after an online resize (`losetup -c`).
const TTL: Duration = Duration::ZERO;
/// The largest read or write the kernel is asked to send in one request (`max_pages`). 256 KiB
/// rather than 1 MiB: a 1 MiB read of the loop device becomes four requests the session
/// threads serve in parallel even at queue depth 1, and a request's buffer fits a core's L2
/// cache between read, decryption and reply. (On the seq-read bench, busy 2-core VM: the
/// encrypted stack did at least as well as with 1 MiB requests, at queue depth 16 and 1.)
const MAX_IO: u32 = 256 << 10;
/// Requests the kernel may keep in flight in the background (async direct I/O, read-ahead).
const MAX_BACKGROUND: u16 = 64;

/// Byte-addressed storage served as the `volume` file.
pub trait BlockIo: Send + Sync + 'static {
    fn size(&self) -> u64;
    fn read(&self, pos: u64, buf: &mut [u8]) -> std::io::Result<()>;
    /// Answer a read of `n` bytes at `pos`: call `answer` once, with the bytes or the error.
    /// The default reads them into `scratch` first (a decryption needs a buffer of its own); a
    /// store whose bytes need no transformation may hand them over from where they are.
    fn read_reply(
        &self,
        pos: u64,
        n: usize,
        scratch: &mut Zeroizing<Vec<u8>>,
        answer: &mut dyn FnMut(std::io::Result<&[u8]>),
    ) {
        answer_from_scratch(self, pos, n, scratch, answer)
    }
    /// Store `data` at `pos` (the request's own bytes, when [`stage_write`](Self::stage_write)
    /// staged nothing).
    fn write(&self, pos: u64, data: &[u8]) -> std::io::Result<()>;
    /// Put in `out[..data.len()]` (growing `out` if it is shorter; it may hold older bytes)
    /// what a write of `data` at `pos` stores, prepared while it is copied out of the request,
    /// and return true: [`write_staged`](Self::write_staged) then stores it. The encrypted
    /// volume stages the ciphertext of whole sectors: one pass over the data, where encrypting
    /// needs a copy anyway (the request buffer is not ours to change). False (the default; and
    /// partial sectors): nothing staged, `out` untouched, [`write`](Self::write) stores `data`.
    fn stage_write(&self, _pos: u64, _data: &[u8], _out: &mut Vec<u8>) -> bool {
        false
    }
    /// Store what [`stage_write`](Self::stage_write) prepared (when it returned true).
    fn write_staged(&self, pos: u64, staged: &[u8]) -> std::io::Result<()> {
        self.write(pos, staged)
    }
    /// Store `data` at `pos`, `data` being the request's own buffer, which the server no
    /// longer needs: an implementation may overwrite it. The encrypted volume encrypts whole
    /// sectors in place there and stores them from there: one pass, no second buffer to fill
    /// and then copy out of. The default stores it as [`write`](Self::write) does.
    fn write_in_place(&self, pos: u64, data: &mut [u8]) -> std::io::Result<()> {
        self.write(pos, data)
    }
    fn flush(&self) -> std::io::Result<()>;
    /// Re-read the backing size (online resize). Returns the new size.
    fn refresh(&self) -> u64 {
        self.size()
    }
}

/// A block device shared between successive [`CryptDevice`]s (rebuilt on resize).
#[derive(Clone)]
pub struct SharedDev(pub Arc<dyn BlockDevice>);

impl BlockDevice for SharedDev {
    fn size(&self) -> std::io::Result<u64> {
        self.0.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.0.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.0.write_at(buf, offset)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
    fn file(&self) -> Option<&std::fs::File> {
        self.0.file()
    }
}

/// Whole sectors within the device: served without a bounce buffer.
fn whole_sectors(c: &CryptDevice<SharedDev>, pos: u64, len: usize) -> bool {
    let ss = c.sector_size() as u64;
    pos.is_multiple_of(ss)
        && (len as u64).is_multiple_of(ss)
        && pos
            .checked_add(len as u64)
            .is_some_and(|end| end <= c.size())
}

/// Encrypt or decrypt on this thread, never on the luks crate's thread pool: the FUSE session
/// threads already process requests in parallel, and handing each request to the pool as well
/// cost more CPU per byte (seq-read bench with 1 MiB requests: daemon CPU 0.53 vs 0.42 s/GB)
/// for no throughput gain on a busy machine.
fn crypt_serial(
    c: &CryptDevice<SharedDev>,
    pos: u64,
    buf: &mut [u8],
    encrypt: bool,
) -> std::io::Result<()> {
    c.crypt_sectors_serial(pos, buf, encrypt).map_err(luks_io)
}

/// A read-only mapping of the whole backing file, if it can be mapped (a regular file or block
/// device node of non-zero size). Reads use it; writes go through `write_at`.
pub(crate) fn map_backing(dev: &dyn BlockDevice, size: u64) -> Option<MappedFile> {
    let file = dev.file()?;
    match MappedFile::new(file, size) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::debug!(error = %e, "backing file not mapped; reads use pread");
            None
        }
    }
}

fn luks_io(e: strongroom_luks::Error) -> std::io::Error {
    match e {
        strongroom_luks::Error::Io { source, .. } => source,
        other => std::io::Error::other(other.to_string()),
    }
}

/// The decrypted view of a LUKS2 data segment.
pub struct CryptIo {
    dev: SharedDev,
    seg: Segment,
    vk: Zeroizing<Vec<u8>>,
    inner: RwLock<CryptDevice<SharedDev>>,
    /// Whole-sector reads decrypt straight from here (see [`super::mapping`]).
    map: Option<MappedFile>,
    backing_size: AtomicU64,
    /// Reads and whole-sector writes share this lock, a partial-sector read-modify-write takes
    /// it exclusively: requests run concurrently on the FUSE session threads, and an RMW must
    /// neither lose a concurrent update of the same sector nor be seen half done. (The loop
    /// device is set up with 4 KiB sectors, so the kernel only sends whole sectors.)
    rmw: RwLock<()>,
}

impl CryptIo {
    pub fn new(dev: Box<dyn BlockDevice>, seg: Segment, vk: Zeroizing<Vec<u8>>) -> Result<Self> {
        let dev = SharedDev(Arc::from(dev));
        let crypt = CryptDevice::new(dev.clone(), &seg, &vk, Backend::Auto)?;
        let size = dev.size().unwrap_or(0);
        let map = map_backing(&dev, size);
        Ok(CryptIo {
            dev,
            seg,
            vk,
            inner: RwLock::new(crypt),
            map,
            backing_size: AtomicU64::new(size),
            rmw: RwLock::new(()),
        })
    }

    /// A copy of the volume key (for a holder's keeper, `datapath::keeper`).
    pub(crate) fn volume_key(&self) -> Zeroizing<Vec<u8>> {
        self.vk.clone()
    }

    fn inner(&self) -> std::io::Result<std::sync::RwLockReadGuard<'_, CryptDevice<SharedDev>>> {
        self.inner.read().map_err(|_| std::io::Error::other("lock"))
    }

    /// Rebuild the crypt device and the mapping for the backing store's current size.
    fn rebuild(&self, backing: u64) -> std::io::Result<u64> {
        let crypt = CryptDevice::new(self.dev.clone(), &self.seg, &self.vk, Backend::Auto)
            .map_err(luks_io)?;
        if let Some(m) = &self.map {
            m.remap(backing);
        }
        let mut g = self
            .inner
            .write()
            .map_err(|_| std::io::Error::other("lock"))?;
        *g = crypt;
        self.backing_size.store(backing, Ordering::Relaxed);
        Ok(g.size())
    }
}

impl BlockIo for CryptIo {
    fn size(&self) -> u64 {
        self.inner().map(|g| g.size()).unwrap_or(0)
    }
    fn read(&self, pos: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let c = self.inner()?;
        // Not in the middle of a partial-sector read-modify-write.
        let _rmw = self.rmw.read().map_err(|_| std::io::Error::other("lock"))?;
        if !whole_sectors(&c, pos, buf.len()) {
            return c.read(pos, buf).map_err(luks_io);
        }
        let at = self.seg.offset + pos;
        if let Some(m) = &self.map {
            let decrypted = m.with_range(at, buf.len(), |src| {
                // One call for the whole request: within a call the cipher prefetches each
                // next sector (and this path does not use the luks thread pool).
                c.crypt_sectors_from(pos, src, buf, false).map_err(luks_io)
            });
            if let Some(r) = decrypted {
                return r;
            }
        }
        self.dev.read_at(buf, at)?;
        crypt_serial(&c, pos, buf, false)
    }
    fn write(&self, pos: u64, data: &[u8]) -> std::io::Result<()> {
        let c = self.inner()?;
        let ss = c.sector_size() as u64;
        let _g = if pos.is_multiple_of(ss) && (data.len() as u64).is_multiple_of(ss) {
            Ok(self.rmw.read().map_err(|_| std::io::Error::other("lock"))?)
        } else {
            Err(self
                .rmw
                .write()
                .map_err(|_| std::io::Error::other("lock"))?)
        };
        c.write(pos, data).map_err(luks_io)
    }
    fn stage_write(&self, pos: u64, data: &[u8], out: &mut Vec<u8>) -> bool {
        // Encrypting whole sectors needs neither the disk nor the RMW lock (a concurrent
        // partial-sector update of the same sector is unordered with this write either way).
        self.inner().ok().is_some_and(|c| {
            whole_sectors(&c, pos, data.len()) && {
                // Grown, never shrunk: a shorter write before a longer one would otherwise
                // zero the difference first (one more pass).
                if out.len() < data.len() {
                    out.resize(data.len(), 0);
                }
                c.crypt_sectors_from(pos, data, &mut out[..data.len()], true)
                    .is_ok()
            }
        })
    }
    fn write_staged(&self, pos: u64, staged: &[u8]) -> std::io::Result<()> {
        let _rmw = self.rmw.read().map_err(|_| std::io::Error::other("lock"))?;
        self.dev.write_at(staged, self.seg.offset + pos)
    }
    fn write_in_place(&self, pos: u64, data: &mut [u8]) -> std::io::Result<()> {
        let c = self.inner()?;
        if !whole_sectors(&c, pos, data.len()) {
            drop(c);
            return self.write(pos, data); // a partial sector's read-modify-write
        }
        // As a staged write: no disk read, and only the RMW lock's shared side.
        crypt_serial(&c, pos, data, true)?;
        self.write_staged(pos, data)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.dev.flush()
    }
    fn refresh(&self) -> u64 {
        // Cheap on the hot path (the kernel asks for attributes often): only a changed backing
        // size rebuilds the crypt device and the mapping.
        let backing = self.dev.size().unwrap_or(0);
        if backing == self.backing_size.load(Ordering::Relaxed) {
            return self.size();
        }
        self.rebuild(backing).unwrap_or_else(|_| self.size())
    }
}

/// Request-serving threads for a machine: two a core (they block in I/O as well as decrypt),
/// 4 to 16.
pub fn threads_for_this_machine() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 2).clamp(4, 16)
}

thread_local! {
    /// Each serving thread's buffer for reads (they are decrypted into it, then replied from
    /// it) and for writes (the ciphertext staged out of the request). Zeroized when the
    /// thread ends (it may hold plaintext) and when replaced by a larger one.
    static READ_BUF: RefCell<Zeroizing<Vec<u8>>> = RefCell::new(Zeroizing::new(Vec::new()));
    static WRITE_BUF: RefCell<Zeroizing<Vec<u8>>> = RefCell::new(Zeroizing::new(Vec::new()));
}

/// The first `n` bytes of a read buffer (grown, never shrunk; the old one is zeroized when
/// replaced).
fn read_scratch(buf: &mut Zeroizing<Vec<u8>>, n: usize) -> &mut [u8] {
    if buf.len() < n {
        *buf = Zeroizing::new(vec![0u8; n]);
    }
    &mut buf[..n]
}

/// [`BlockIo::read_reply`] through a buffer: read the bytes into `scratch`, answer from there.
pub(crate) fn answer_from_scratch<I: BlockIo + ?Sized>(
    io: &I,
    pos: u64,
    n: usize,
    scratch: &mut Zeroizing<Vec<u8>>,
    answer: &mut dyn FnMut(std::io::Result<&[u8]>),
) {
    let buf = read_scratch(scratch, n);
    let r = io.read(pos, buf);
    answer(r.map(|()| &*buf))
}

/// A write buffer with room for `n` bytes, so filling it never reallocates (a reallocation
/// would free a copy of the data unzeroized). It may hold an earlier request's bytes: the
/// filler sets its length and every byte up to it (zeroing first would be one more pass).
fn write_scratch(buf: &mut Zeroizing<Vec<u8>>, n: usize) -> &mut Vec<u8> {
    if buf.capacity() < n {
        *buf = Zeroizing::new(Vec::with_capacity(n));
    }
    buf
}

/// The FUSE filesystem. Requests are served on fuser's session threads, several of them, each
/// reading requests from its own clone of the /dev/fuse descriptor (`FUSE_DEV_IOC_CLONE`), the
/// way libfuse's multi-threaded loop does: a request is read, decrypted or encrypted and
/// answered on one thread, with no hand-off. (A single reading thread handing requests to
/// workers was the bottleneck of sequential writes: that thread alone copied every write out
/// of the request and encrypted it.)
pub struct VolumeFs<I: BlockIo> {
    io: Arc<I>,
    uid: u32,
    gid: u32,
    started: SystemTime,
}

impl<I: BlockIo> VolumeFs<I> {
    pub fn new(io: Arc<I>) -> Self {
        VolumeFs {
            io,
            uid: 0,
            gid: 0,
            started: SystemTime::now(),
        }
    }

    fn attr(&self, ino: INodeNo, size: u64) -> FileAttr {
        let (kind, perm, nlink, size) = if ino == ROOT {
            (FileType::Directory, 0o700, 2, 0)
        } else {
            (FileType::RegularFile, 0o600, 1, size)
        };
        FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

fn errno(e: &std::io::Error) -> Errno {
    Errno::from_i32(errno_of(e))
}

/// The errno an I/O error is answered with.
fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// The connection's settings asked of the kernel at INIT (each may be refused by an older
/// kernel: then its default applies).
fn configure(config: &mut KernelConfig) {
    let _ = config.set_max_write(MAX_IO);
    let _ = config.set_max_readahead(MAX_IO);
    let _ = config.set_max_background(MAX_BACKGROUND);
    let _ = config.add_capabilities(InitFlags::FUSE_ASYNC_DIO);
}

impl<I: BlockIo> Filesystem for VolumeFs<I> {
    fn init(&mut self, req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        self.uid = req.uid();
        self.gid = req.gid();
        configure(config);
        Ok(())
    }

    /// The session ends (the mount is gone): what was written reaches the store before the
    /// I/O is dropped (a writer that never asked for a flush, e.g. raw block-mode I/O).
    fn destroy(&mut self) {
        if let Err(e) = self.io.flush() {
            tracing::error!(error = %e, "flushing the volume at the end of its FUSE session");
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == ROOT && name == FILE_NAME {
            let size = self.io.refresh();
            reply.entry(&TTL, &self.attr(FILE, size), Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match ino {
            ROOT => reply.attr(&TTL, &self.attr(ROOT, 0)),
            FILE => {
                let size = self.io.refresh();
                reply.attr(&TTL, &self.attr(FILE, size))
            }
            _ => reply.error(Errno::ENOENT),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if ino != FILE {
            return reply.error(Errno::EPERM);
        }
        let cur = self.io.size();
        // The size is the volume's: truncation is refused (O_TRUNC on open of the same size ok).
        if matches!(size, Some(s) if s != cur) {
            return reply.error(Errno::EPERM);
        }
        reply.attr(&TTL, &self.attr(FILE, cur))
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino == FILE {
            reply.opened(FileHandle(0), FopenFlags::empty())
        } else {
            reply.error(Errno::EISDIR)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if ino != FILE {
            return reply.error(Errno::EINVAL);
        }
        let total = self.io.size();
        if offset >= total {
            return reply.data(&[]);
        }
        let n = (size as u64).min(total - offset) as usize;
        let mut reply = Some(reply);
        READ_BUF.with_borrow_mut(|buf| {
            self.io.read_reply(offset, n, buf, &mut |r| {
                if let Some(reply) = reply.take() {
                    match r {
                        Ok(bytes) => reply.data(bytes),
                        Err(e) => reply.error(errno(&e)),
                    }
                }
            })
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if ino != FILE {
            return reply.error(Errno::EINVAL);
        }
        if offset.saturating_add(data.len() as u64) > self.io.size() {
            return reply.error(Errno::ENOSPC);
        }
        // Whole sectors of an encrypted volume: encrypted while copied out of the request (one
        // pass), then stored. Otherwise stored straight from the request (a partial sector's
        // read-modify-write copies only that sector).
        WRITE_BUF.with_borrow_mut(|buf| {
            let buf = write_scratch(buf, data.len());
            let r = if self.io.stage_write(offset, data, buf) {
                self.io.write_staged(offset, &buf[..data.len()])
            } else {
                self.io.write(offset, data)
            };
            match r {
                Ok(()) => reply.written(data.len() as u32),
                Err(e) => reply.error(errno(&e)),
            }
        })
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok()
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // A flush covers the writes already answered (those are in the backing file); writes
        // still in flight are not complete yet, so no ordering with them is owed.
        match self.io.flush() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let entries = [
            (ROOT, FileType::Directory, "."),
            (ROOT, FileType::Directory, ".."),
            (FILE, FileType::RegularFile, FILE_NAME),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok()
    }
}

/// Mount `io` at `dir` (a FUSE session on background threads). Dropping the session unmounts.
pub fn spawn<I: BlockIo>(io: Arc<I>, dir: &Path) -> Result<fuser::BackgroundSession> {
    spawn_with(io, dir, threads_for_this_machine())
}

/// [`spawn`] with `threads` request-serving threads.
pub fn spawn_with<I: BlockIo>(
    io: Arc<I>,
    dir: &Path,
    threads: usize,
) -> Result<fuser::BackgroundSession> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("mkdir {}", dir.display()), e))?;
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("strongroom".into()),
        MountOption::Subtype("volume".into()),
        MountOption::RW,
        MountOption::NoAtime,
    ];
    config.n_threads = Some(threads.max(1));
    config.clone_fd = true;
    fuser::spawn_mount(VolumeFs::new(io), dir, &config)
        .map_err(|e| Error::io(format!("FUSE mount at {}", dir.display()), e))
}

/// Block until the FUSE mount at `dir` is gone (unmounted by `unmount`/`fusermount3 -u`) and
/// the session has ended: its threads stopped when the kernel let go of the connection, and the
/// filesystem was flushed ([`Filesystem::destroy`]) and dropped with its I/O (for RBD: the image
/// closed, its exclusive lock released). Only then may the caller's process exit: dropping the
/// session instead detached the thread doing that, and a process that exited first left the
/// image unclosed (its lock held by a dead client until the OSD timed its watch out, ~30 s).
pub fn serve_until_unmounted(session: fuser::BackgroundSession, dir: &Path) {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    loop {
        match super::try_mount_points() {
            Ok(m) if !m.contains(&dir) => break,
            Ok(_) => {}
            // Not knowing is not "gone": exiting with the mount still live would leave
            // its writes unserved. Keep serving and look again.
            Err(e) => tracing::warn!(error = %e, "cannot read the mount table; still serving"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Err(e) = session.join() {
        tracing::warn!(error = %e, "FUSE session ended with an error");
    }
}

pub mod lowlevel;

#[cfg(test)]
pub(crate) mod tests;
