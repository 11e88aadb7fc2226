//! (feature `bench`) The benchmark's unencrypted twin of the userspace data path: a plain
//! file served through the same FUSE layer as an encrypted volume, for `bench/volume.sh`'s
//! "same stack, no encryption" runs (`strongroom volume passthrough`, built with
//! `--features bench`). Not part of the production data path.

use crate::datapath::fuse::{self, answer_from_scratch, map_backing, BlockIo};
use crate::datapath::mapping::MappedFile;
use crate::error::Result;
use std::path::Path;
use std::sync::Arc;
use strongroom_luks::BlockDevice;
use zeroize::Zeroizing;

/// A plain file from `offset` on: the unencrypted twin of [`fuse::CryptIo`] (benchmarks), the same
/// FUSE stack without encryption, run its fastest ways: reads are answered straight from a
/// mapping of the file (the kernel copies the page cache into the request; nothing is copied
/// here), writes go straight from the request to the file. [`fuse::CryptIo`] needs one pass over
/// the data more each way, the decryption or the encryption: that pass is what the bench
/// measures. (Before, the twin copied both ways, as the encrypted path's structure did then;
/// the copies were not needed, and made the ratios look better than they were.)
pub struct PlainIo {
    dev: Box<dyn BlockDevice>,
    offset: u64,
    map: Option<MappedFile>,
}

impl PlainIo {
    pub fn new(dev: Box<dyn BlockDevice>, offset: u64) -> Self {
        let size = dev.size().unwrap_or(0);
        let map = map_backing(&*dev, size);
        PlainIo { dev, offset, map }
    }
}

impl BlockIo for PlainIo {
    fn size(&self) -> u64 {
        self.dev
            .size()
            .map(|s| s.saturating_sub(self.offset) / 4096 * 4096)
            .unwrap_or(0)
    }
    fn read(&self, pos: u64, buf: &mut [u8]) -> std::io::Result<()> {
        // Reads are answered by `read_reply`, straight from the mapping; this is its fallback.
        self.dev.read_at(buf, self.offset + pos)
    }
    fn read_reply(
        &self,
        pos: u64,
        n: usize,
        scratch: &mut Zeroizing<Vec<u8>>,
        answer: &mut dyn FnMut(std::io::Result<&[u8]>),
    ) {
        let at = self.offset + pos;
        if let Some(m) = &self.map {
            // Straight from the mapping: the kernel copies the page cache into the request,
            // and nothing is copied here. (An unreadable page fails the kernel's copy, which
            // then answers the request with EIO; no SIGBUS is raised for a kernel access.)
            let replied = m.with_range(at, n, |src| {
                answer(Ok(src));
                Ok(())
            });
            if replied.is_some() {
                return;
            }
        }
        answer_from_scratch(self, pos, n, scratch, answer)
    }
    fn write(&self, pos: u64, data: &[u8]) -> std::io::Result<()> {
        self.dev.write_at(data, self.offset + pos)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.dev.flush()
    }
}

/// Serve `file`'s bytes from `offset` on as the FUSE file `<dir>/volume` until `dir` is
/// unmounted (`fusermount3 -u DIR`); `ready` is called once the mount is up.
pub fn serve_plain(file: &Path, offset: u64, dir: &Path, ready: impl FnOnce()) -> Result<()> {
    let dev = strongroom_luks::FileDevice::open(file, true)
        .map_err(|e| crate::Error::io(format!("open {}", file.display()), e))?;
    serve_plain_device(Box::new(dev), offset, dir, ready)
}

/// As [`serve_plain`], over any device (an RBD image: the RBD stack's unencrypted twin).
/// Served by the volume holder's own FUSE loop ([`fuse::lowlevel`]), as an encrypted volume
/// is: the twin differs from the encrypted stack by the cipher pass only. (It used to be
/// served by fuser's session, a different loop — one fd per thread, another buffer
/// discipline — so the bench's "extra" mixed the two loops' costs into the cipher's.)
pub fn serve_plain_device(
    dev: Box<dyn BlockDevice>,
    offset: u64,
    dir: &Path,
    ready: impl FnOnce(),
) -> Result<()> {
    let io = PlainIo::new(dev, offset);
    let (fd, _) = fuse::lowlevel::mount(dir)?;
    ready();
    // returns once the filesystem is unmounted
    fuse::lowlevel::serve(Arc::new(fd), Arc::new(io), fuse::threads_for_this_machine());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::fuse::tests::{can_fuse, fill, Aligned, SS};
    use crate::datapath::fuse::FILE_NAME;
    use rand::{Rng, RngCore, SeedableRng};
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    use std::time::Duration;
    use strongroom_luks::FileDevice;

    /// The benchmark's unencrypted twin serves the plain file's bytes from `offset` on, reads
    /// answered straight from its mapping and writes straight from the request, through a real
    /// FUSE mount with O_DIRECT requests of several sizes (a fast twin that served wrong bytes
    /// would make every ratio meaningless).
    #[test]
    fn plain_twin_serves_the_file_through_fuse() {
        if !can_fuse() {
            return;
        }
        const OFFSET: u64 = 1 << 20;
        const LEN: usize = 8 << 20;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.img");
        let mut content = vec![0u8; OFFSET as usize + LEN];
        rand::rngs::StdRng::seed_from_u64(7).fill_bytes(&mut content);
        std::fs::write(&path, &content).unwrap();
        let dev = FileDevice::open(&path, true).unwrap();
        let mnt = dir.path().join("fuse");
        let (up_tx, up_rx) = std::sync::mpsc::channel();
        let server = {
            let mnt = mnt.clone();
            std::thread::spawn(move || {
                serve_plain_device(Box::new(dev), OFFSET, &mnt, || up_tx.send(()).unwrap())
            })
        };
        up_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let file = mnt.join(FILE_NAME);
        for _ in 0..100 {
            if file.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(std::fs::metadata(&file).unwrap().len(), LEN as u64);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&file)
            .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let sizes = [SS, 64 << 10, 256 << 10, 1 << 20];
        let mut want = content[OFFSET as usize..].to_vec();
        for round in 0..200u64 {
            let n = sizes[rng.gen_range(0..sizes.len())];
            let pos = rng.gen_range(0..(LEN - n) / SS) * SS;
            let mut b = Aligned::new(n);
            if round % 3 == 0 {
                fill(b.buf(), round, pos as u64);
                f.write_all_at(b.buf(), pos as u64).unwrap();
                want[pos..pos + n].copy_from_slice(b.buf());
            } else {
                f.read_exact_at(b.buf(), pos as u64).unwrap();
                assert!(b.buf() == &want[pos..pos + n], "read {n} at {pos}");
            }
        }
        f.sync_all().unwrap();
        drop(f);
        rustix::mount::unmount(&mnt, rustix::mount::UnmountFlags::empty()).unwrap();
        server.join().unwrap().unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert!(
            on_disk[..OFFSET as usize] == content[..OFFSET as usize],
            "header untouched"
        );
        assert!(
            on_disk[OFFSET as usize..] == want[..],
            "the file holds every write"
        );
    }
}
