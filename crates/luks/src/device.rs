//! Block devices: positioned reads and writes on files and raw block devices (and, later, Ceph
//! RBD). All methods take `&self` so I/O can run in parallel.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub trait BlockDevice: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Fill `buf` from `offset`; a short read is an error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Write all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Make previous writes durable (orders the steps of a header update).
    fn flush(&self) -> io::Result<()>;
    /// The open file behind the device, if it is one (regular file or block device node): lets
    /// a data path map it instead of copying through `read_at`.
    fn file(&self) -> Option<&File> {
        None
    }
    /// Make `[offset, offset + len)` read as zeros. The default writes zeros; devices may
    /// do it without data I/O (files: `fallocate` zero range / hole punch).
    fn zero_range(&self, offset: u64, len: u64) -> io::Result<()> {
        const CHUNK: u64 = 1 << 20;
        let zeros = vec![0u8; CHUNK.min(len) as usize];
        let mut pos = 0;
        while pos < len {
            let n = (len - pos).min(CHUNK) as usize;
            self.write_at(&zeros[..n], offset + pos)?;
            pos += n as u64;
        }
        Ok(())
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for &T {
    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        (**self).write_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        (**self).flush()
    }
    fn zero_range(&self, offset: u64, len: u64) -> io::Result<()> {
        (**self).zero_range(offset, len)
    }
    fn file(&self) -> Option<&File> {
        (**self).file()
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for Box<T> {
    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        (**self).write_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        (**self).flush()
    }
    fn zero_range(&self, offset: u64, len: u64) -> io::Result<()> {
        (**self).zero_range(offset, len)
    }
    fn file(&self) -> Option<&File> {
        (**self).file()
    }
}

/// A regular file or a block device node.
pub struct FileDevice {
    file: File,
    writable: bool,
}

impl FileDevice {
    pub fn open(path: &Path, writable: bool) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(writable).open(path)?;
        Ok(FileDevice { file, writable })
    }
    pub fn from_file(file: File, writable: bool) -> Self {
        FileDevice { file, writable }
    }
    pub fn is_writable(&self) -> bool {
        self.writable
    }
}

impl BlockDevice for FileDevice {
    fn size(&self) -> io::Result<u64> {
        // Works for regular files and block devices alike.
        (&self.file).seek(SeekFrom::End(0))
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn file(&self) -> Option<&File> {
        Some(&self.file)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        if self.writable {
            self.file.sync_data()
        } else {
            Ok(())
        }
    }
    fn zero_range(&self, offset: u64, len: u64) -> io::Result<()> {
        use rustix::fs::{fallocate, FallocateFlags};
        if len == 0 {
            return Ok(());
        }
        if fallocate(
            &self.file,
            FallocateFlags::ZERO_RANGE | FallocateFlags::KEEP_SIZE,
            offset,
            len,
        )
        .is_ok()
            || fallocate(
                &self.file,
                FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                offset,
                len,
            )
            .is_ok()
        {
            return Ok(());
        }
        const CHUNK: u64 = 1 << 20;
        let zeros = vec![0u8; CHUNK.min(len) as usize];
        let mut pos = 0;
        while pos < len {
            let n = (len - pos).min(CHUNK) as usize;
            self.file.write_all_at(&zeros[..n], offset + pos)?;
            pos += n as u64;
        }
        Ok(())
    }
}

/// An in-memory device (tests, fuzzing).
#[derive(Default)]
pub struct MemDevice {
    data: Mutex<Vec<u8>>,
}

impl MemDevice {
    pub fn new(data: Vec<u8>) -> Self {
        MemDevice {
            data: Mutex::new(data),
        }
    }
    pub fn zeroed(len: usize) -> Self {
        MemDevice::new(vec![0; len])
    }
    pub fn into_inner(self) -> Vec<u8> {
        self.data.into_inner().unwrap_or_else(|e| e.into_inner())
    }
    pub fn snapshot(&self) -> Vec<u8> {
        self.data.lock().map(|d| d.clone()).unwrap_or_default()
    }
}

fn poisoned() -> io::Error {
    io::Error::other("device lock poisoned")
}

impl BlockDevice for MemDevice {
    fn size(&self) -> io::Result<u64> {
        Ok(self.data.lock().map_err(|_| poisoned())?.len() as u64)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let d = self.data.lock().map_err(|_| poisoned())?;
        let start =
            usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| d.get(start..end))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut d = self.data.lock().map_err(|_| poisoned())?;
        let start = usize::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
        let end = start
            .checked_add(buf.len())
            .ok_or_else(|| io::Error::other("offset too large"))?;
        if end > d.len() {
            d.resize(end, 0);
        }
        d[start..end].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Crash simulator: lets the first `limit` writes through, tears write number `limit + 1`
/// (only its first half reaches the device) and fails it and every later write.
pub struct FailAfterWrites<D> {
    inner: D,
    limit: usize,
    writes: AtomicUsize,
}

impl<D: BlockDevice> FailAfterWrites<D> {
    pub fn new(inner: D, limit: usize) -> Self {
        FailAfterWrites {
            inner,
            limit,
            writes: AtomicUsize::new(0),
        }
    }
    /// Number of write calls attempted so far.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
    pub fn into_inner(self) -> D {
        self.inner
    }
}

impl<D: BlockDevice> BlockDevice for FailAfterWrites<D> {
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        if n < self.limit {
            self.inner.write_at(buf, offset)
        } else {
            if n == self.limit {
                let _ = self.inner.write_at(&buf[..buf.len() / 2], offset);
            }
            Err(io::Error::other("simulated crash"))
        }
    }
    fn flush(&self) -> io::Result<()> {
        if self.writes.load(Ordering::SeqCst) > self.limit {
            return Err(io::Error::other("simulated crash"));
        }
        self.inner.flush()
    }
}
