//! A read-only shared mapping of a volume's backing file (or block device node), so the
//! userspace data path decrypts straight from the page cache into the reply buffer: one pass
//! over the data instead of a copy (`pread`) followed by an in-place decryption.
//!
//! Why: the kernel's copy out of the page cache (`pread`) cost as much CPU as the decryption
//! itself; decrypting from the mapping reads the ciphertext once (seq-read bench: the encrypted
//! stack went from 0.89 to 0.95-0.99 of the unencrypted one, and 3.6 to 4.5-6.0 GB/s).
//! (`MADV_POPULATE_READ` per request would turn I/O errors into return values, but it walks the
//! page tables of every request; the SIGBUS handler below keeps the hot path free of calls.)
//!
//! Page cache: the mapping has no fault read-around (`MADV_RANDOM`): the kernel's read-around
//! fills the page cache with large folios, and a 4 KiB buffered write into one walks all its
//! blocks (random 4 KiB writes ran at half speed after a sequential read through the mapping).
//! Requests of [`READAHEAD_MIN`] and more ask for readahead of their range instead.
//!
//! The hazard of reading a file through a mapping is that an I/O error (or a file truncated
//! underneath) raises SIGBUS at the load instead of returning an error. A SIGBUS handler
//! recognises addresses inside a live mapping, puts a zero page there so the load can finish,
//! and marks the mapping *damaged*: the reader then answers EIO instead of the bytes it read,
//! and [`MappedFile`] replaces the mapping (other reads in flight on the same mapping answer EIO
//! too: conservative, and only after a real fault). SIGBUS at any other address is handed to
//! the disposition that was there before (by default, the process ends).
//!
//! Page tables: a mapping keeps a page-table entry for every page it has touched (8 bytes per
//! 4 KiB) until it is unmapped, so [`MappedFile`] maps afresh after every [`REMAP_BYTES`] read
//! through it: at most 8 MiB of page tables per volume.
//!
//! Invariants (each `unsafe` block below relies only on these):
//! 1. A [`Mapping`] owns `len` bytes of address space at `ptr`, mapped `PROT_READ`,
//!    `MAP_SHARED`, from `mmap` until its drop; `len > 0`.
//! 2. Slices handed out lie within `[ptr, ptr + len)` (bounds checked before) and borrow the
//!    `Mapping`, so they cannot outlive the mapping.
//! 3. The signal handler touches only atomics and makes raw `mmap` calls (async-signal-safe in
//!    practice on Linux: a system call, no locks, no allocation). A mapping is registered in
//!    [`LIVE`] before its first use and unregistered before `munmap`, so the handler never
//!    replaces a page of memory that is not one of our read-only file mappings.
//!
//! Concurrency note: the bytes of a shared mapping can change while they are read, when a
//! write to the same sectors runs concurrently; the block layer gives no ordering between a
//! read and a concurrent write of the same sectors either (a `pread` can return torn data just
//! the same). Readers only copy or decrypt the bytes, never branch on them.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Once;

/// Live mappings the SIGBUS handler recognises: (start, len, damaged flag address) slots.
const SLOTS: usize = 1024;
struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    /// Address of the mapping's damaged flag (a `Box<AtomicBool>`); 0 free, `usize::MAX`
    /// being filled in.
    damaged: AtomicUsize,
}
#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    damaged: AtomicUsize::new(0),
};
static LIVE: [Slot; SLOTS] = [FREE; SLOTS];

pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// Set by the SIGBUS handler when a page of this mapping could not be read.
    damaged: Box<AtomicBool>,
    slot: Option<usize>,
}

// SAFETY: the mapping is read-only memory owned by this value (invariant 1); sharing `&[u8]`
// views of it between threads is as safe as sharing any `&[u8]`.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Map the first `len` bytes of `file` read-only. `len` must be positive.
    pub fn new(file: &File, len: u64) -> io::Result<Self> {
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mapping length"))?;
        install_handler();
        // SAFETY: a fresh mapping at an address the kernel picks; nothing aliases it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap"))?;
        // No read-around on faults: the kernel's mmap read-around fills the page cache with
        // large folios, and every later 4 KiB buffered write into such a folio walks all its
        // blocks (random 4 KiB writes ran at half speed after a sequential read through the
        // mapping). Large requests ask for readahead explicitly instead (see `with_range`).
        // SAFETY: advice on our own mapping (invariant 1); failure only costs speed.
        unsafe { libc::madvise(p, len, libc::MADV_RANDOM) };
        let mut m = Mapping {
            ptr,
            len,
            damaged: Box::new(AtomicBool::new(false)),
            slot: None,
        };
        m.slot = m.register();
        if m.slot.is_none() {
            return Err(io::Error::other(
                "too many mapped volumes in this process (SIGBUS registry full)",
            ));
        }
        Ok(m)
    }

    fn register(&self) -> Option<usize> {
        let flag = &*self.damaged as *const AtomicBool as usize;
        for (i, s) in LIVE.iter().enumerate() {
            if s.damaged
                .compare_exchange(0, usize::MAX, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                s.start.store(self.ptr.as_ptr() as usize, Ordering::Release);
                s.len.store(self.len, Ordering::Release);
                s.damaged.store(flag, Ordering::Release);
                return Some(i);
            }
        }
        None
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Has a page of this mapping failed to read (the owner should replace it)?
    pub fn damaged(&self) -> bool {
        self.damaged.load(Ordering::Acquire)
    }

    /// Bytes `[off, off + n)`. A page that cannot be read (I/O error, file truncated) reads as
    /// zeros and sets [`damaged`](Self::damaged): check it after using the bytes.
    pub fn range(&self, off: u64, n: usize) -> io::Result<&[u8]> {
        let off = usize::try_from(off).unwrap_or(usize::MAX);
        if off.checked_add(n).is_none_or(|end| end > self.len) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read beyond the mapped backing file",
            ));
        }
        if n == 0 {
            return Ok(&[]);
        }
        // SAFETY: invariant 2: in bounds, and the slice borrows `self`.
        Ok(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(off), n) })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            // Unregister first (invariant 3), then unmap.
            LIVE[i].start.store(0, Ordering::Release);
            LIVE[i].len.store(0, Ordering::Release);
            LIVE[i].damaged.store(0, Ordering::Release);
        }
        // SAFETY: invariant 1: our mapping, no borrows outlive `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    match PAGE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf has no preconditions.
            let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let p = if p > 0 { p as usize } else { 4096 };
            PAGE.store(p, Ordering::Relaxed);
            p
        }
        p => p,
    }
}

/// The SIGBUS disposition before ours (leaked once): restored for faults that are not ours.
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());
static PAGE_FOR_HANDLER: AtomicUsize = AtomicUsize::new(4096);

fn install_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        PAGE_FOR_HANDLER.store(page_size(), Ordering::Relaxed);
        // SAFETY: zeroed sigactions are valid; ours has the handler and SA_SIGINFO, and the
        // handler upholds invariant 3. The previous one is kept (leaked) for chaining.
        unsafe {
            let old: *mut libc::sigaction = Box::into_raw(Box::new(std::mem::zeroed()));
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigbus as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(libc::SIGBUS, &sa, old) == 0 {
                PREVIOUS.store(old, Ordering::Release);
            }
        }
    });
}

extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE_FOR_HANDLER.load(Ordering::Relaxed);
    for s in LIVE.iter() {
        let start = s.start.load(Ordering::Acquire);
        let len = s.len.load(Ordering::Acquire);
        let flag = s.damaged.load(Ordering::Acquire);
        if start != 0 && flag != 0 && flag != usize::MAX && addr >= start && addr < start + len {
            let at = addr / page * page;
            // SAFETY: invariant 3: `at` is a page of one of our live read-only file mappings;
            // replacing it with a private zero page lets the faulting load complete.
            let r = unsafe {
                libc::mmap(
                    at as *mut libc::c_void,
                    page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if r != libc::MAP_FAILED {
                // SAFETY: `flag` is the address of the mapping's boxed `AtomicBool`, alive while
                // the slot is registered (unregistered before the drop; a fault inside the
                // mapping means a borrow of it is being read, so it is not being dropped).
                unsafe { (*(flag as *const AtomicBool)).store(true, Ordering::Release) };
                return;
            }
            break;
        }
    }
    // Not ours (or the page could not be replaced): put the previous disposition back; the
    // fault repeats on return and is handled as it would have been without this handler.
    let old = PREVIOUS.load(Ordering::Acquire);
    // SAFETY: `old` is null or the leaked sigaction saved at installation.
    unsafe {
        if old.is_null() {
            libc::signal(libc::SIGBUS, libc::SIG_DFL);
        } else {
            libc::sigaction(libc::SIGBUS, old, std::ptr::null_mut());
        }
    }
}

/// Requests at least this large ask for readahead of their range before reading it.
const READAHEAD_MIN: usize = 64 << 10;

/// Bytes read through one mapping before it is replaced (bounds its page tables).
pub const REMAP_BYTES: u64 = 4 << 30;

/// Reads of a file through a mapping of its first `len` bytes, remapped after
/// [`REMAP_BYTES`] and after a damaged page; `None` from [`with_range`](Self::with_range) when
/// the file cannot be mapped (the caller reads with `pread`).
pub struct MappedFile {
    file: File,
    map: std::sync::RwLock<Option<Mapping>>,
    read: AtomicUsize,
    remap_bytes: u64,
    remaps: AtomicUsize,
}

impl MappedFile {
    /// A mapping of the first `len` bytes of `file` (a duplicate handle is kept).
    pub fn new(file: &File, len: u64) -> io::Result<Self> {
        let file = file.try_clone()?;
        let map = Mapping::new(&file, len)?;
        Ok(MappedFile {
            file,
            map: std::sync::RwLock::new(Some(map)),
            read: AtomicUsize::new(0),
            remap_bytes: REMAP_BYTES,
            remaps: AtomicUsize::new(0),
        })
    }

    /// How many times the file was mapped afresh.
    #[cfg(test)]
    pub fn remaps(&self) -> usize {
        self.remaps.load(Ordering::Relaxed)
    }

    /// Map the first `len` bytes afresh (the file grew, or to drop page tables).
    pub fn remap(&self, len: u64) {
        let fresh = Mapping::new(&self.file, len).ok();
        if let Ok(mut g) = self.map.write() {
            *g = fresh;
            self.read.store(0, Ordering::Relaxed);
            self.remaps.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Call `f` with bytes `[off, off + n)` of the file; `None` if they are not mapped. An
    /// unreadable page gives EIO (after `f` ran on a zero page in its place).
    pub fn with_range<T>(
        &self,
        off: u64,
        n: usize,
        f: impl FnOnce(&[u8]) -> io::Result<T>,
    ) -> Option<io::Result<T>> {
        let (out, damaged, len) = {
            let g = self.map.read().ok()?;
            let m = g.as_ref()?;
            if n >= READAHEAD_MIN {
                // Start reading what is not cached in one go, in small folios (the mapping has
                // no read-around: a miss would otherwise fault one page at a time). A system
                // call; small requests skip it (a fault reads their page just the same).
                // SAFETY: an advisory call on our own open file; no memory is passed.
                unsafe {
                    libc::posix_fadvise(
                        self.file.as_raw_fd(),
                        off as libc::off_t,
                        n as libc::off_t,
                        libc::POSIX_FADV_WILLNEED,
                    )
                };
            }
            let src = match m.range(off, n) {
                Ok(s) => s,
                Err(_) => return None,
            };
            let out = f(src);
            (out, m.damaged(), m.len() as u64)
        };
        let before = self.read.fetch_add(n, Ordering::Relaxed) as u64;
        if damaged {
            self.remap(len);
            return Some(Err(io::Error::from_raw_os_error(libc::EIO)));
        }
        // The one read that crosses the threshold remaps.
        if before < self.remap_bytes && before + n as u64 >= self.remap_bytes {
            self.remap(len);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;
    use std::io::Write;

    fn file_with(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let mut data = vec![0u8; len];
        rand::rngs::OsRng.fill_bytes(&mut data);
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&data).unwrap();
        f.flush().unwrap();
        (f, data)
    }

    #[test]
    fn reads_through_the_mapping_see_the_file_and_later_writes() {
        use std::os::unix::fs::FileExt;
        let (f, mut data) = file_with(1 << 20);
        let m = MappedFile::new(f.as_file(), data.len() as u64).unwrap();
        for (off, n) in [
            (0usize, 4096usize),
            (4096 * 7, 65536),
            (12345, 777),
            (0, 1 << 20),
        ] {
            let got = m
                .with_range(off as u64, n, |s| Ok(s.to_vec()))
                .unwrap()
                .unwrap();
            assert!(got == data[off..off + n], "{off}+{n}");
        }
        // Beyond the mapped length: not mapped (the caller falls back to pread).
        assert!(m.with_range((1 << 20) - 10, 11, |_| Ok(())).is_none());
        assert!(m.with_range(u64::MAX - 5, 10, |_| Ok(())).is_none());
        // A write through the file is seen through the mapping (one page cache).
        f.as_file().write_all_at(b"fresh bytes", 5000).unwrap();
        data[5000..5011].copy_from_slice(b"fresh bytes");
        let got = m
            .with_range(4096, 8192, |s| Ok(s.to_vec()))
            .unwrap()
            .unwrap();
        assert!(got == data[4096..4096 + 8192]);
    }

    /// A page that cannot be read (here: the file truncated under the mapping, which raises
    /// SIGBUS exactly as an I/O error does) gives EIO, not a dead process; the file is mapped
    /// afresh and readable parts read correctly afterwards.
    #[test]
    fn an_unreadable_page_is_an_io_error_not_a_crash() {
        let (f, data) = file_with(1 << 20);
        let m = MappedFile::new(f.as_file(), data.len() as u64).unwrap();
        // Touch the whole mapping first, so the later fault is on a reclaimed (truncated) page.
        m.with_range(0, 1 << 20, |s| Ok(s.iter().map(|&b| b as u64).sum::<u64>()))
            .unwrap()
            .unwrap();
        f.as_file().set_len(8192).unwrap();
        let r = m.with_range(65536, 8192, |s| Ok(s.to_vec())).unwrap();
        let e = r.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
        assert_eq!(m.remaps(), 1, "mapped afresh after the damaged read");
        let got = m.with_range(0, 8192, |s| Ok(s.to_vec())).unwrap().unwrap();
        assert!(got == data[..8192]);
        // Still beyond the end in the fresh mapping: an error again, never a crash.
        let e = m
            .with_range(1 << 19, 4096, |s| Ok(s.to_vec()))
            .unwrap()
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
    }

    #[test]
    fn mapped_afresh_after_the_read_threshold() {
        let (f, data) = file_with(256 << 10);
        let mut m = MappedFile::new(f.as_file(), data.len() as u64).unwrap();
        m.remap_bytes = 100 << 10;
        for i in 0..10u64 {
            let off = (i % 4) * (64 << 10);
            let got = m
                .with_range(off, 64 << 10, |s| Ok(s.to_vec()))
                .unwrap()
                .unwrap();
            assert!(got == data[off as usize..off as usize + (64 << 10)]);
        }
        // 640 KiB read, remapped each time the count passes 100 KiB (every second read).
        assert_eq!(m.remaps(), 5);
    }

    #[test]
    fn an_empty_file_is_not_mapped() {
        let f = tempfile::NamedTempFile::new().unwrap();
        assert!(MappedFile::new(f.as_file(), 0).is_err());
    }
}
