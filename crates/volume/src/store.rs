//! Backing stores: where the LUKS2 ciphertext lives. One trait so that Ceph RBD (librbd image
//! as a [`BlockDevice`]) plugs in next to the sparse file and the raw block device.

use crate::error::{Error, Result};
use crate::meta::StoreSpec;
pub use crate::store_rbd::RbdStore;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use strongroom_luks::{BlockDevice, FileDevice};

pub trait BackingStore: Send + Sync {
    /// Make sure the store exists with at least `bytes`; never shrinks, never touches content.
    fn ensure(&self, bytes: u64) -> Result<()>;
    /// Current size in bytes.
    fn size(&self) -> Result<u64>;
    /// Grow to `bytes` (no-op if already that large).
    fn grow(&self, bytes: u64) -> Result<()>;
    /// Positioned I/O on the store.
    fn open(&self, writable: bool) -> Result<Box<dyn BlockDevice>>;
    /// Open for this node's read-write attach `claim` (its token, the same for every process
    /// serving that attach): a store that other nodes can reach (RBD) refuses it,
    /// [`Error::FailedPrecondition`], while another attach has it.
    fn open_exclusive(&self, _claim: &str) -> Result<Box<dyn BlockDevice>> {
        self.open(true)
    }
    /// A path the kernel can attach (loop device / dm-crypt), if the store has one.
    fn local_path(&self) -> Option<&Path>;
    /// Keep the volume's metadata record with the data, where the store can (RBD image
    /// metadata), so that another node finds it. Stores without that keep nothing.
    fn put_meta(&self, _record: &[u8]) -> Result<()> {
        Ok(())
    }
    /// The record [`put_meta`](Self::put_meta) kept, if any.
    fn get_meta(&self) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    /// Delete the store itself (RBD: the image, to the trash while clones depend on it);
    /// stores owned by someone else (a block device) or by the volume directory are kept.
    fn remove(&self) -> Result<()> {
        Ok(())
    }
}

/// Build the store a metadata record points at.
pub fn from_spec(spec: &StoreSpec) -> Box<dyn BackingStore> {
    match spec {
        StoreSpec::File { path } => Box::new(SparseFile::new(path)),
        StoreSpec::Block { path } => Box::new(BlockDev::new(path)),
        StoreSpec::Rbd {
            pool,
            namespace,
            image,
            ceph,
            layout,
        } => Box::new(RbdStore::new(pool, namespace, image, ceph).with_layout(layout)),
    }
}

/// A sparse regular file: created with `set_len`, so unwritten space costs nothing.
pub struct SparseFile {
    path: PathBuf,
}

impl SparseFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SparseFile { path: path.into() }
    }
}

impl BackingStore for SparseFile {
    fn ensure(&self, bytes: u64) -> Result<()> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
            .map_err(|e| Error::io(format!("create {}", self.path.display()), e))?;
        let len = f
            .metadata()
            .map_err(|e| Error::io("stat backing file", e))?
            .len();
        if len < bytes {
            f.set_len(bytes)
                .map_err(|e| Error::io("size backing file", e))?;
        }
        f.sync_all().map_err(|e| Error::io("fsync backing file", e))
    }
    fn size(&self) -> Result<u64> {
        std::fs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(|e| Error::io(format!("stat {}", self.path.display()), e))
    }
    fn grow(&self, bytes: u64) -> Result<()> {
        self.ensure(bytes)
    }
    fn open(&self, writable: bool) -> Result<Box<dyn BlockDevice>> {
        FileDevice::open(&self.path, writable)
            .map(|d| Box::new(d) as Box<dyn BlockDevice>)
            .map_err(|e| Error::io(format!("open {}", self.path.display()), e))
    }
    fn local_path(&self) -> Option<&Path> {
        Some(&self.path)
    }
}

/// A raw block device (e.g. a local disk partition or an LVM volume) that an administrator
/// provides: never created or resized by us.
pub struct BlockDev {
    path: PathBuf,
}

impl BlockDev {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        BlockDev { path: path.into() }
    }
}

impl BackingStore for BlockDev {
    fn ensure(&self, bytes: u64) -> Result<()> {
        let have = self.size()?;
        if have < bytes {
            return Err(Error::InvalidArgument(format!(
                "block device {} has {have} bytes, {bytes} needed",
                self.path.display()
            )));
        }
        Ok(())
    }
    fn size(&self) -> Result<u64> {
        FileDevice::open(&self.path, false)
            .and_then(|d| d.size())
            .map_err(|e| Error::io(format!("size of {}", self.path.display()), e))
    }
    fn grow(&self, bytes: u64) -> Result<()> {
        // Growing a block device is the administrator's job (lvextend, rbd resize, ...).
        self.ensure(bytes)
    }
    fn open(&self, writable: bool) -> Result<Box<dyn BlockDevice>> {
        FileDevice::open(&self.path, writable)
            .map(|d| Box::new(d) as Box<dyn BlockDevice>)
            .map_err(|e| Error::io(format!("open {}", self.path.display()), e))
    }
    fn local_path(&self) -> Option<&Path> {
        Some(&self.path)
    }
}
