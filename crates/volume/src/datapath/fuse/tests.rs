//! Tests of the userspace data path: staged and concurrent writes on [`CryptIo`], and the
//! mounted FUSE file under parallel direct I/O.

use super::*;
use rand::{Rng, RngCore, SeedableRng};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use strongroom_luks::FileDevice;

pub(crate) const SS: usize = 4096;
const DATA_OFFSET: u64 = 1 << 20;

fn segment() -> Segment {
    Segment {
        id: 0,
        kind: "crypt".into(),
        offset: DATA_OFFSET,
        size: None,
        iv_tweak: 0,
        encryption: "aes-xts-plain64".into(),
        sector_size: SS as u32,
        flags: vec![],
        integrity: false,
    }
}

/// A backing file of `data_len` bytes of (zero) ciphertext after the data offset, its key.
fn backing(dir: &Path, data_len: u64) -> (std::path::PathBuf, Zeroizing<Vec<u8>>) {
    let path = dir.join("backing.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(DATA_OFFSET + data_len)
        .unwrap();
    let mut vk = Zeroizing::new(vec![0u8; 64]);
    rand::rngs::OsRng.fill_bytes(&mut vk);
    (path, vk)
}

fn crypt_io(path: &Path, vk: &Zeroizing<Vec<u8>>) -> CryptIo {
    let dev = FileDevice::open(path, true).unwrap();
    CryptIo::new(Box::new(dev), segment(), vk.clone()).unwrap()
}

/// Decrypt the backing file independently of [`CryptIo`].
fn decrypt_all(path: &Path, vk: &[u8]) -> Vec<u8> {
    let dev = FileDevice::open(path, false).unwrap();
    let c = CryptDevice::new(dev, &segment(), vk, Backend::Auto).unwrap();
    let mut out = vec![0u8; c.size() as usize];
    c.read(0, &mut out).unwrap();
    out
}

/// The bytes a writer `tag` puts at absolute position `pos..pos + buf.len()` (8-byte words
/// that name their writer and position: a misplaced or stale block shows).
pub(crate) fn fill(buf: &mut [u8], tag: u64, pos: u64) {
    for (i, w) in buf.chunks_mut(8).enumerate() {
        let mut x = (pos + 8 * i as u64) ^ tag.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        w.copy_from_slice(&x.to_le_bytes()[..w.len()]);
    }
}

fn expected(len: usize, tag: u64, pos: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill(&mut v, tag, pos);
    v
}

/// `len` bytes aligned for O_DIRECT (safe: the slice starts at an aligned offset).
pub(crate) struct Aligned {
    v: Vec<u8>,
    off: usize,
    len: usize,
}

impl Aligned {
    pub(crate) fn new(len: usize) -> Self {
        let v = vec![0u8; len + SS];
        let off = (SS - v.as_ptr() as usize % SS) % SS;
        Aligned { v, off, len }
    }
    pub(crate) fn buf(&mut self) -> &mut [u8] {
        &mut self.v[self.off..self.off + self.len]
    }
}

#[test]
fn write_buffers_are_reused_and_never_reallocated_while_filled() {
    let mut b = Zeroizing::new(Vec::new());
    write_scratch(&mut b, 5).extend_from_slice(b"hello");
    let cap = b.capacity();
    assert!(cap >= 5);
    let w = write_scratch(&mut b, 2);
    assert_eq!(w.capacity(), cap, "reused");
    w.clear();
    w.extend_from_slice(b"hi");
    assert_eq!(&b[..], b"hi");
    let w = write_scratch(&mut b, cap + 1);
    assert!(w.capacity() > cap, "replaced by one with room");
    assert!(w.is_empty());
    let mut r = Zeroizing::new(Vec::new());
    assert_eq!(read_scratch(&mut r, 10).len(), 10);
    assert_eq!(read_scratch(&mut r, 3).len(), 3);
}

/// A staged write (encrypted while copied out of the request) stores what the direct
/// path stores; partial sectors are not staged and go through the read-modify-write.
#[test]
fn staged_writes_store_the_same_ciphertext_as_in_place_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (path, vk) = backing(dir.path(), 64 * SS as u64);
    let io = crypt_io(&path, &vk);
    let data = expected(8 * SS, 7, 3 * SS as u64);
    let mut out = vec![0xeeu8; 3]; // a reused buffer with older bytes
    assert!(io.stage_write(3 * SS as u64, &data, &mut out));
    assert_eq!(out.len(), data.len());
    assert!(out != data, "staged bytes are ciphertext");
    io.write_staged(3 * SS as u64, &out).unwrap();
    io.write(20 * SS as u64, &data).unwrap();
    let plain = decrypt_all(&path, &vk);
    assert!(plain[3 * SS..11 * SS] == data[..]);
    assert!(plain[20 * SS..28 * SS] == data[..]);
    // A longer buffer is used, not shrunk: only its first bytes are the staged ones.
    let short = expected(2 * SS, 8, 30 * SS as u64);
    assert!(io.stage_write(30 * SS as u64, &short, &mut out));
    assert_eq!(out.len(), data.len());
    io.write_staged(30 * SS as u64, &out[..short.len()])
        .unwrap();
    assert!(decrypt_all(&path, &vk)[30 * SS..32 * SS] == short[..]);
    // Partial sector: not staged (the buffer is left alone), written by the RMW path.
    let part = expected(100, 9, 40 * SS as u64 + 12);
    let before = out.clone();
    assert!(!io.stage_write(40 * SS as u64 + 12, &part, &mut out));
    assert!(out == before);
    io.write(40 * SS as u64 + 12, &part).unwrap();
    let plain = decrypt_all(&path, &vk);
    assert!(plain[40 * SS + 12..40 * SS + 112] == part[..]);
}

/// A write in place encrypts whole sectors in the caller's buffer and stores them from
/// there: the same ciphertext as the other write paths; a partial sector goes through the
/// read-modify-write and leaves the buffer as it was.
#[test]
fn writes_in_place_store_ciphertext_from_the_request_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let (path, vk) = backing(dir.path(), 64 * SS as u64);
    let io = crypt_io(&path, &vk);
    let data = expected(8 * SS, 11, 5 * SS as u64);
    let mut req = data.clone();
    io.write_in_place(5 * SS as u64, &mut req).unwrap();
    assert!(req != data, "the request buffer now holds the ciphertext");
    let mut staged = Vec::new();
    assert!(io.stage_write(5 * SS as u64, &data, &mut staged));
    assert!(staged == req, "the ciphertext a staged write stores");
    let on_disk = std::fs::read(&path).unwrap();
    let at = (DATA_OFFSET + 5 * SS as u64) as usize;
    assert!(
        on_disk[at..at + data.len()] == req[..],
        "stored from the buffer as it is"
    );
    assert!(decrypt_all(&path, &vk)[5 * SS..13 * SS] == data[..]);
    // Partial sector: read-modify-write, the buffer untouched.
    let part = expected(100, 12, 20 * SS as u64 + 12);
    let mut req = part.clone();
    io.write_in_place(20 * SS as u64 + 12, &mut req).unwrap();
    assert!(req == part);
    let plain = decrypt_all(&path, &vk);
    assert!(plain[20 * SS + 12..20 * SS + 112] == part[..]);
    assert!(plain[5 * SS..13 * SS] == data[..], "neighbours kept");
}

/// The holder's own request loop ([`lowlevel`]) over an encrypted volume, on a real mount:
/// writes of several sizes (whole sectors, encrypted in the request's buffer; a partial sector,
/// read-modify-written) read back through the mount, and the backing file decrypts
/// independently to the same bytes once unmounted.
#[test]
fn lowlevel_server_writes_read_back_and_decrypt_independently() {
    if !can_fuse() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (path, vk) = backing(dir.path(), 4 << 20);
    let mnt = dir.path().join("ll");
    let (fd, _) = lowlevel::mount(&mnt).unwrap();
    let fd = Arc::new(fd);
    let io = Arc::new(crypt_io(&path, &vk));
    let server = std::thread::spawn(move || lowlevel::serve(fd, io, 3));
    let file = mnt.join(FILE_NAME);
    let direct = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&file)
        .unwrap();
    let mut want = vec![0u8; 4 << 20];
    let mut pos = 0usize;
    for (i, n) in [SS, 64 << 10, 256 << 10, 1 << 20, 3 * SS]
        .into_iter()
        .enumerate()
    {
        let mut b = Aligned::new(n);
        fill(b.buf(), i as u64, pos as u64);
        direct.write_all_at(b.buf(), pos as u64).unwrap();
        want[pos..pos + n].copy_from_slice(b.buf());
        pos += n;
    }
    // The sector a partial write then changes 100 bytes of (its other bytes known).
    let mut b = Aligned::new(SS);
    fill(b.buf(), 98, pos as u64);
    direct.write_all_at(b.buf(), pos as u64).unwrap();
    want[pos..pos + SS].copy_from_slice(b.buf());
    let part = expected(100, 99, pos as u64 + 12);
    let buffered = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    buffered.write_all_at(&part, pos as u64 + 12).unwrap();
    buffered.sync_all().unwrap();
    want[pos + 12..pos + 112].copy_from_slice(&part);
    let end = pos + SS;
    let mut back = Aligned::new(end);
    direct.read_exact_at(back.buf(), 0).unwrap();
    let first_bad = back.buf().iter().zip(&want).position(|(a, b)| a != b);
    assert_eq!(first_bad, None, "read back through the mount");
    drop((direct, buffered));
    rustix::mount::unmount(&mnt, rustix::mount::UnmountFlags::empty()).unwrap();
    server.join().unwrap();
    assert!(
        decrypt_all(&path, &vk)[..end] == want[..end],
        "the backing file"
    );
}

/// Whole-sector writes and partial-sector read-modify-writes from many threads at once, as
/// the FUSE session threads issue them: every byte ends up as its last writer left it (no lost
/// update within a shared sector), as decrypted independently from the backing file.
#[test]
fn concurrent_whole_and_partial_sector_writes_lose_nothing() {
    const THREADS: usize = 8;
    const STRIPE: usize = 256 << 10; // each thread's own whole-sector region
    const SHARED: usize = 32; // sectors every thread writes a 512-byte slot of
    const ROUNDS: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let data_len = (THREADS * STRIPE + SHARED * SS) as u64;
    let (path, vk) = backing(dir.path(), data_len);
    let io = Arc::new(crypt_io(&path, &vk));
    let shared0 = (THREADS * STRIPE) as u64;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let io = Arc::clone(&io);
            s.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(t as u64);
                let base = (t * STRIPE) as u64;
                for round in 0..ROUNDS {
                    let tag = (t as u64) << 16 | round;
                    // Own stripe: whole sectors in random-sized pieces, both write paths.
                    let mut at = 0usize;
                    while at < STRIPE {
                        let n = (rng.gen_range(1..=16) * SS).min(STRIPE - at);
                        let pos = base + at as u64;
                        let b = expected(n, tag, pos);
                        let mut staged = Vec::new();
                        if rng.gen_bool(0.5) && io.stage_write(pos, &b, &mut staged) {
                            io.write_staged(pos, &staged[..n]).unwrap();
                        } else {
                            io.write(pos, &b).unwrap();
                        }
                        at += n;
                    }
                    // Own 512-byte slot of every shared sector: partial-sector RMW.
                    for k in 0..SHARED {
                        let pos = shared0 + (k * SS + t * 512) as u64;
                        io.write(pos, &expected(512, tag, pos)).unwrap();
                    }
                    // Whole-sector reads of the own stripe see the round just written.
                    let mut r = vec![0u8; STRIPE];
                    io.read(base, &mut r).unwrap();
                    assert!(r == expected(STRIPE, tag, base), "thread {t} round {round}");
                }
            });
        }
    });
    let plain = decrypt_all(&path, &vk);
    for t in 0..THREADS {
        let tag = (t as u64) << 16 | (ROUNDS - 1);
        let base = t * STRIPE;
        assert!(
            plain[base..base + STRIPE] == expected(STRIPE, tag, base as u64)[..],
            "stripe of thread {t}"
        );
        for k in 0..SHARED {
            let pos = shared0 as usize + k * SS + t * 512;
            assert!(
                plain[pos..pos + 512] == expected(512, tag, pos as u64)[..],
                "slot {t} of shared sector {k}: an update was lost"
            );
        }
    }
}

pub(crate) fn can_fuse() -> bool {
    // Mounting needs root and /dev/fuse here.
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root || !Path::new("/dev/fuse").exists() {
        eprintln!("SKIP: needs root and /dev/fuse");
        return false;
    }
    true
}

/// The mounted FUSE file under parallel direct I/O from many threads (each large request is
/// split by the kernel into concurrent FUSE requests, served by several session threads): every
/// region reads back as written, during and after the writes, and the backing file
/// decrypts to the same bytes.
#[test]
fn parallel_direct_io_on_the_fuse_file() {
    if !can_fuse() {
        return;
    }
    const THREADS: usize = 6;
    const REGION: usize = 8 << 20;
    const ROUNDS: u64 = 3;
    let dir = tempfile::tempdir().unwrap();
    let (path, vk) = backing(dir.path(), (THREADS * REGION) as u64);
    let mnt = dir.path().join("fuse");
    let session = spawn_with(Arc::new(crypt_io(&path, &vk)), &mnt, 8).unwrap();
    let file = mnt.join(FILE_NAME);
    for _ in 0..100 {
        if file.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&file)
            .unwrap()
    };
    let sizes = [SS, 64 << 10, 1 << 20, 4 << 20];
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let f = open();
            s.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(100 + t as u64);
                let base = (t * REGION) as u64;
                for round in 0..ROUNDS {
                    let tag = (t as u64) << 16 | round;
                    let mut at = 0usize;
                    while at < REGION {
                        let n = sizes[rng.gen_range(0..sizes.len())].min(REGION - at);
                        let pos = base + at as u64;
                        let mut b = Aligned::new(n);
                        fill(b.buf(), tag, pos);
                        f.write_all_at(b.buf(), pos).unwrap();
                        at += n;
                    }
                    let mut at = 0usize;
                    while at < REGION {
                        let n = sizes[rng.gen_range(0..sizes.len())].min(REGION - at);
                        let pos = base + at as u64;
                        let mut b = Aligned::new(n);
                        f.read_exact_at(b.buf(), pos).unwrap();
                        assert!(
                            b.buf() == &expected(n, tag, pos)[..],
                            "thread {t} round {round} at {pos}+{n}"
                        );
                        at += n;
                    }
                }
                f.sync_all().unwrap();
            });
        }
    });
    drop(session);
    for _ in 0..100 {
        if !super::super::is_mounted(&mnt) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!super::super::is_mounted(&mnt), "unmounted");
    let plain = decrypt_all(&path, &vk);
    for t in 0..THREADS {
        let base = t * REGION;
        let tag = (t as u64) << 16 | (ROUNDS - 1);
        assert!(
            plain[base..base + REGION] == expected(REGION, tag, base as u64)[..],
            "region of thread {t} in the backing file"
        );
    }
}

/// Storage that records its end: a slow flush (as librbd's under load), then the drop (for
/// RBD: the image closed, its exclusive lock released).
struct SlowToClose {
    bytes: std::sync::Mutex<Vec<u8>>,
    events: Arc<std::sync::Mutex<Vec<&'static str>>>,
}

impl BlockIo for SlowToClose {
    fn size(&self) -> u64 {
        self.bytes.lock().unwrap().len() as u64
    }
    fn read(&self, pos: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let b = self.bytes.lock().unwrap();
        buf.copy_from_slice(&b[pos as usize..pos as usize + buf.len()]);
        Ok(())
    }
    fn write(&self, pos: u64, data: &[u8]) -> std::io::Result<()> {
        self.bytes.lock().unwrap()[pos as usize..pos as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        std::thread::sleep(Duration::from_millis(600));
        self.events.lock().unwrap().push("flushed");
        Ok(())
    }
}

impl Drop for SlowToClose {
    fn drop(&mut self) {
        self.events.lock().unwrap().push("closed");
    }
}

/// A holder process exits when `serve_until_unmounted` returns: by then its storage must be
/// flushed and closed, however slow that is. (It used to return as soon as the mount was gone,
/// leaving the flush and close to a detached thread that the process exit cut short: an RBD
/// image stayed locked by a dead client, and unflushed writes could be lost.)
#[test]
fn serving_ends_only_after_the_storage_is_flushed_and_closed() {
    if !can_fuse() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("fuse");
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let io = SlowToClose {
        bytes: std::sync::Mutex::new(vec![0u8; 1 << 20]),
        events: events.clone(),
    };
    let session = spawn_with(Arc::new(io), &mnt, 2).unwrap();
    let file = mnt.join(FILE_NAME);
    for _ in 0..100 {
        if file.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.write_all_at(&[7u8; 4096], 0).unwrap();
    drop(f);
    let unmounter = {
        let mnt = mnt.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            super::super::fuse_unmount(&mnt).unwrap();
        })
    };
    serve_until_unmounted(session, &mnt);
    unmounter.join().unwrap();
    assert_eq!(
        *events.lock().unwrap(),
        ["flushed", "closed"],
        "flushed, then closed, before serving returned"
    );
}
