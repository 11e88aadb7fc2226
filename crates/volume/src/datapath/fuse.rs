//! The userspace data path's first half: a FUSE filesystem with one regular file, `volume`,
//! whose bytes are the decrypted LUKS2 data segment (or, for benchmarks, a plain file's bytes:
//! the same stack without encryption). A loop device is then attached to that file.

use crate::error::{Error, Result};
use fuser::{
    FileAttr, FileType, Filesystem, KernelConfig, MountOption, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow,
};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use strongroom_luks::model::Segment;
use strongroom_luks::xts::Backend;
use strongroom_luks::{BlockDevice, CryptDevice};
use zeroize::Zeroizing;

pub const FILE_NAME: &str = "volume";
const ROOT: u64 = 1;
const FILE: u64 = 2;
// No attribute caching: the size must be re-read after an online resize (`losetup -c`).
const TTL: Duration = Duration::ZERO;

/// Byte-addressed storage served as the `volume` file.
pub trait BlockIo: Send + Sync + 'static {
    fn size(&self) -> u64;
    fn read(&self, pos: u64, buf: &mut [u8]) -> std::io::Result<()>;
    fn write(&self, pos: u64, data: &[u8]) -> std::io::Result<()>;
    /// Write a buffer the callee may reuse (encrypt in place): saves a copy.
    fn write_owned(&self, pos: u64, data: Vec<u8>) -> std::io::Result<()> {
        self.write(pos, &data)
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
    backing_size: AtomicU64,
    /// Whole-sector I/O shares this lock, a partial-sector read-modify-write takes it
    /// exclusively (no lost update within a sector if requests ever run concurrently; the loop
    /// device is set up with 4 KiB sectors so the kernel only sends whole sectors).
    rmw: RwLock<()>,
}

impl CryptIo {
    pub fn new(dev: Box<dyn BlockDevice>, seg: Segment, vk: Zeroizing<Vec<u8>>) -> Result<Self> {
        let dev = SharedDev(Arc::from(dev));
        let inner = CryptDevice::new(dev.clone(), &seg, &vk, Backend::Auto)?;
        let backing_size = AtomicU64::new(dev.size().unwrap_or(0));
        Ok(CryptIo {
            dev,
            seg,
            vk,
            inner: RwLock::new(inner),
            backing_size,
            rmw: RwLock::new(()),
        })
    }
}

impl BlockIo for CryptIo {
    fn size(&self) -> u64 {
        self.inner.read().map(|c| c.size()).unwrap_or(0)
    }
    fn read(&self, pos: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let c = self
            .inner
            .read()
            .map_err(|_| std::io::Error::other("lock"))?;
        c.read(pos, buf).map_err(luks_io)
    }
    fn write(&self, pos: u64, data: &[u8]) -> std::io::Result<()> {
        let c = self
            .inner
            .read()
            .map_err(|_| std::io::Error::other("lock"))?;
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
    fn write_owned(&self, pos: u64, mut data: Vec<u8>) -> std::io::Result<()> {
        let c = self
            .inner
            .read()
            .map_err(|_| std::io::Error::other("lock"))?;
        let ss = c.sector_size() as u64;
        let aligned = pos.is_multiple_of(ss) && (data.len() as u64).is_multiple_of(ss);
        if !aligned || pos + data.len() as u64 > c.size() {
            drop(c);
            return self.write(pos, &data);
        }
        let _g = self.rmw.read().map_err(|_| std::io::Error::other("lock"))?;
        c.crypt_sectors(pos, &mut data, true).map_err(luks_io)?;
        self.dev.write_at(&data, self.seg.offset + pos)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.dev.flush()
    }
    fn refresh(&self) -> u64 {
        // Cheap on the hot path (the kernel asks for attributes often): only a changed backing
        // size rebuilds the crypt device.
        let backing = self.dev.size().unwrap_or(0);
        if backing == self.backing_size.load(Ordering::Relaxed) {
            return self.size();
        }
        if let Ok(c) = CryptDevice::new(self.dev.clone(), &self.seg, &self.vk, Backend::Auto) {
            if let Ok(mut g) = self.inner.write() {
                *g = c;
                self.backing_size.store(backing, Ordering::Relaxed);
                return g.size();
            }
        }
        self.size()
    }
}

/// A plain file from `offset` on: the unencrypted twin of [`CryptIo`] (benchmarks).
pub struct PlainIo {
    pub dev: Box<dyn BlockDevice>,
    pub offset: u64,
}

impl BlockIo for PlainIo {
    fn size(&self) -> u64 {
        self.dev
            .size()
            .map(|s| s.saturating_sub(self.offset) / 4096 * 4096)
            .unwrap_or(0)
    }
    fn read(&self, pos: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.dev.read_at(buf, self.offset + pos)
    }
    fn write(&self, pos: u64, data: &[u8]) -> std::io::Result<()> {
        self.dev.write_at(data, self.offset + pos)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.dev.flush()
    }
}

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

    fn attr(&self, ino: u64, size: u64) -> FileAttr {
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

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

impl<I: BlockIo> Filesystem for VolumeFs<I> {
    fn init(
        &mut self,
        req: &Request<'_>,
        config: &mut KernelConfig,
    ) -> std::result::Result<(), libc::c_int> {
        self.uid = req.uid();
        self.gid = req.gid();
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        if parent == ROOT && name == FILE_NAME {
            let size = self.io.refresh();
            reply.entry(&TTL, &self.attr(FILE, size), 0);
        } else {
            reply.error(libc::ENOENT);
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match ino {
            ROOT => reply.attr(&TTL, &self.attr(ROOT, 0)),
            FILE => {
                let size = self.io.refresh();
                reply.attr(&TTL, &self.attr(FILE, size))
            }
            _ => reply.error(libc::ENOENT),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        if ino != FILE {
            return reply.error(libc::EPERM);
        }
        let cur = self.io.size();
        // The size is the volume's: truncation is refused (O_TRUNC on open of the same size ok).
        if matches!(size, Some(s) if s != cur) {
            return reply.error(libc::EPERM);
        }
        reply.attr(&TTL, &self.attr(FILE, cur))
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        if ino == FILE {
            reply.opened(0, 0)
        } else {
            reply.error(libc::EISDIR)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        if ino != FILE || offset < 0 {
            return reply.error(libc::EINVAL);
        }
        let total = self.io.size();
        let pos = offset as u64;
        if pos >= total {
            return reply.data(&[]);
        }
        let n = (size as u64).min(total - pos) as usize;
        let mut buf = vec![0u8; n];
        match self.io.read(pos, &mut buf) {
            Ok(()) => reply.data(&buf),
            Err(e) => reply.error(errno(&e)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        if ino != FILE || offset < 0 {
            return reply.error(libc::EINVAL);
        }
        let pos = offset as u64;
        if pos + data.len() as u64 > self.io.size() {
            return reply.error(libc::ENOSPC);
        }
        // One copy: the crypt layer encrypts it in place.
        match self.io.write_owned(pos, data.to_vec()) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock: u64, reply: ReplyEmpty) {
        reply.ok()
    }

    fn fsync(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _ds: bool, reply: ReplyEmpty) {
        match self.io.flush() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        if ino != ROOT {
            return reply.error(libc::ENOTDIR);
        }
        let entries = [
            (ROOT, FileType::Directory, "."),
            (ROOT, FileType::Directory, ".."),
            (FILE, FileType::RegularFile, FILE_NAME),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, (i + 1) as i64, *kind, name) {
                break;
            }
        }
        reply.ok()
    }
}

/// Mount `io` at `dir` (a FUSE session on a background thread). Dropping the session unmounts.
pub fn spawn<I: BlockIo>(io: Arc<I>, dir: &Path) -> Result<fuser::BackgroundSession> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("mkdir {}", dir.display()), e))?;
    let opts = [
        MountOption::FSName("strongroom".into()),
        MountOption::Subtype("volume".into()),
        MountOption::RW,
        MountOption::NoAtime,
    ];
    fuser::spawn_mount2(VolumeFs::new(io), dir, &opts)
        .map_err(|e| Error::io(format!("FUSE mount at {}", dir.display()), e))
}

/// Block until the FUSE mount at `dir` is gone (unmounted by `unmount`/`fusermount3 -u`), then
/// end the session. (`BackgroundSession::join` would unmount first.)
pub fn serve_until_unmounted(session: fuser::BackgroundSession, dir: &Path) {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    while super::mount_points().contains(&dir) {
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(session);
}
