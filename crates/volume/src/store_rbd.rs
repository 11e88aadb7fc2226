//! The Ceph RBD backing store: a volume is an RBD image; the LUKS2 header sits at image offset
//! 0 exactly as `rbd encryption format luks2` lays it out (4096-byte sectors, data at 16 MiB),
//! so librbd's `encryption_load` and, after `rbd export`, cryptsetup open our images. The
//! volume's metadata record is also kept in the image's metadata ([`RBD_META_KEY`]).
//!
//! Connections are made once per (ceph.conf, user) and shared by every image of a process.

use crate::error::{Error, Result};
use crate::meta::CephRef;
use crate::store::BackingStore;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use strongroom_luks::BlockDevice;
use strongroom_rbd::{Cluster, ErrorKind, Features, Image, IoCtx};

/// The image metadata key holding the volume's metadata record (JSON + checksum line).
pub const RBD_META_KEY: &str = "strongroom.meta";
/// Requests larger than this are split into asynchronous pieces of this size.
const AIO_PIECE: usize = 1 << 20;
/// Pieces in flight per request.
const AIO_DEPTH: usize = 8;

/// A new image name as ceph-csi makes them: `csi-vol-<random version-4 UUID>`.
pub fn new_image_name() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "csi-vol-{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A Ceph error as the volume manager's class (cephx refusal, missing image, busy image...).
pub(crate) fn ceph_error(context: &str, e: strongroom_rbd::Error) -> Error {
    let msg = format!("{context}: {e}");
    match e.kind() {
        ErrorKind::NotFound => Error::NotFound(msg),
        ErrorKind::PermissionDenied => Error::PermissionDenied(msg),
        ErrorKind::InvalidArgument => Error::InvalidArgument(msg),
        ErrorKind::Busy | ErrorKind::ReadOnly | ErrorKind::Blocklisted => {
            Error::FailedPrecondition(msg)
        }
        ErrorKind::TimedOut => Error::Unavailable(msg),
        ErrorKind::LibraryMissing => Error::FailedPrecondition(msg),
        _ => Error::io(msg, std::io::Error::from(e)),
    }
}

type ConnKey = (Option<PathBuf>, String);

fn connect(ceph: &CephRef) -> Result<Cluster> {
    static CONNS: Mutex<Option<HashMap<ConnKey, Cluster>>> = Mutex::new(None);
    let key = (ceph.conf.as_ref().map(PathBuf::from), ceph.user.clone());
    let mut g = CONNS.lock().unwrap_or_else(|e| e.into_inner());
    let map = g.get_or_insert_with(HashMap::new);
    if let Some(c) = map.get(&key) {
        return Ok(c.clone());
    }
    let c = Cluster::from_conf(key.0.as_deref(), &ceph.user)
        .map_err(|e| ceph_error("connect to Ceph", e))?;
    map.insert(key, c.clone());
    Ok(c)
}

pub struct RbdStore {
    pool: String,
    namespace: String,
    image: String,
    ceph: CephRef,
}

impl RbdStore {
    pub fn new(pool: &str, namespace: &str, image: &str, ceph: &CephRef) -> Self {
        RbdStore {
            pool: pool.into(),
            namespace: namespace.into(),
            image: image.into(),
            ceph: ceph.clone(),
        }
    }
    fn ioctx(&self) -> Result<IoCtx> {
        connect(&self.ceph)?
            .ioctx(&self.pool, &self.namespace, true)
            .map_err(|e| ceph_error("open pool", e))
    }
    fn image(&self) -> Result<Image> {
        self.ioctx()?
            .open(&self.image)
            .map_err(|e| ceph_error("open RBD image", e))
    }
    /// The image, or `None` if it does not exist.
    fn image_opt(&self) -> Result<Option<Image>> {
        match self.ioctx()?.open(&self.image) {
            Ok(i) => Ok(Some(i)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ceph_error("open RBD image", e)),
        }
    }
}

impl BackingStore for RbdStore {
    fn ensure(&self, bytes: u64) -> Result<()> {
        let io = self.ioctx()?;
        match io.create(&self.image, bytes, Features::default_for_volumes()) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => self.grow(bytes),
            r => r.map_err(|e| ceph_error("create RBD image", e)),
        }
    }
    fn size(&self) -> Result<u64> {
        self.image()?
            .size()
            .map_err(|e| ceph_error("RBD image size", e))
    }
    fn grow(&self, bytes: u64) -> Result<()> {
        let img = self.image()?;
        let have = img.size().map_err(|e| ceph_error("RBD image size", e))?;
        if have < bytes {
            img.resize(bytes)
                .map_err(|e| ceph_error("resize RBD image", e))?;
        }
        Ok(())
    }
    fn open(&self, _writable: bool) -> Result<Box<dyn BlockDevice>> {
        Ok(Box::new(RbdDevice::new(self.image()?)))
    }
    fn open_exclusive(&self) -> Result<Box<dyn BlockDevice>> {
        let img = self.image()?;
        // librbd's exclusive lock, taken explicitly: held until this handle closes (or the
        // process dies and its watch expires); another client's acquire is refused.
        match img.lock_acquire() {
            Ok(()) => Ok(Box::new(RbdDevice::new(img))),
            Err(e) if matches!(e.kind(), ErrorKind::ReadOnly | ErrorKind::Busy) => {
                let owners = img.lock_owners().unwrap_or_default().join(", ");
                Err(Error::FailedPrecondition(format!(
                    "RBD image {} is attached read-write elsewhere (exclusive lock held by {owners})",
                    self.image
                )))
            }
            Err(e) => Err(ceph_error("lock RBD image", e)),
        }
    }
    fn local_path(&self) -> Option<&Path> {
        None
    }
    fn put_meta(&self, record: &[u8]) -> Result<()> {
        let Some(img) = self.image_opt()? else {
            return Ok(()); // not created yet: the record goes there once it is
        };
        let text = std::str::from_utf8(record)
            .map_err(|_| Error::Internal("metadata record is not UTF-8".into()))?;
        img.metadata_set(RBD_META_KEY, text)
            .map_err(|e| ceph_error("store metadata in the RBD image", e))
    }
    fn get_meta(&self) -> Result<Option<Vec<u8>>> {
        let Some(img) = self.image_opt()? else {
            return Ok(None);
        };
        Ok(img
            .metadata_get(RBD_META_KEY)
            .map_err(|e| ceph_error("read metadata of the RBD image", e))?
            .map(String::into_bytes))
    }
    fn remove(&self) -> Result<()> {
        let io = self.ioctx()?;
        match io.remove(&self.image) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            // snapshots with clones: the image waits in the trash until they are gone
            Err(e) if e.kind() == ErrorKind::Busy => io
                .trash_move(&self.image)
                .map_err(|e| ceph_error("move RBD image to the trash", e)),
            Err(e) => Err(ceph_error("remove RBD image", e)),
        }
    }
}

/// An open RBD image as a LUKS2 engine's block device. I/O from several threads at once (the
/// FUSE session threads) is several librbd requests in flight; a large request is split into
/// [`AIO_PIECE`]s of which [`AIO_DEPTH`] are in flight.
pub struct RbdDevice {
    img: Arc<Image>,
}

impl RbdDevice {
    pub fn new(img: Image) -> Self {
        RbdDevice { img: Arc::new(img) }
    }
    /// A device over an image that others use too (e.g. for asynchronous I/O beside it).
    pub fn shared(img: Arc<Image>) -> Self {
        RbdDevice { img }
    }
    pub fn image(&self) -> &Image {
        &self.img
    }
    fn read_split(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let mut q = self.img.aio(AIO_DEPTH);
        let place = |done: Option<(u64, Vec<u8>)>, buf: &mut [u8]| {
            if let Some((ofs, data)) = done {
                let at = (ofs - offset) as usize;
                buf[at..at + data.len()].copy_from_slice(&data);
            }
        };
        for (i, piece) in buf
            .chunks(AIO_PIECE)
            .map(<[u8]>::len)
            .enumerate()
            .collect::<Vec<_>>()
        {
            let ofs = offset + (i * AIO_PIECE) as u64;
            let done = q.read(ofs, vec![0; piece]).map_err(std::io::Error::from)?;
            place(done, buf);
        }
        while let Some(d) = q.wait_oldest().map_err(std::io::Error::from)? {
            place(Some(d), buf);
        }
        Ok(())
    }
    fn write_split(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let mut q = self.img.aio(AIO_DEPTH);
        for (i, piece) in buf.chunks(AIO_PIECE).enumerate() {
            q.write(offset + (i * AIO_PIECE) as u64, piece.to_vec())
                .map_err(std::io::Error::from)?;
        }
        while q.wait_oldest().map_err(std::io::Error::from)?.is_some() {}
        Ok(())
    }
}

impl BlockDevice for RbdDevice {
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.img.size()?)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        if buf.len() > AIO_PIECE {
            return self.read_split(buf, offset);
        }
        Ok(self.img.read(offset, buf)?)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        if buf.len() > AIO_PIECE {
            return self.write_split(buf, offset);
        }
        Ok(self.img.write(offset, buf)?)
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(self.img.flush()?)
    }
}
