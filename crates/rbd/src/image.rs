//! An open RBD image ([`Image`]) and bounded asynchronous I/O on it ([`AioQueue`]).

use crate::cluster::IoCtx;
use crate::error::{Error, Result};
use crate::ffi::{self, cstr, SnapOp};
use std::collections::VecDeque;
use std::ffi::CString;

/// An open image. I/O may be issued from several threads at once.
pub struct Image {
    img: ffi::Img,
    name: String,
}

/// A snapshot of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: u64,
    pub size: u64,
    pub name: String,
}

/// A client watching an image (one per process that has it open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watcher {
    /// `ip:port/nonce`, what [`crate::Cluster::blocklist`] takes.
    pub address: String,
    /// The client id (`client.<id>`).
    pub id: i64,
}

impl Image {
    pub(crate) fn open(
        io: &IoCtx,
        name: &str,
        c: CString,
        snap: Option<Option<CString>>,
    ) -> Result<Image> {
        let img = match &snap {
            None => ffi::Img::open(io.raw().clone(), &c, None, false),
            Some(s) => ffi::Img::open(io.raw().clone(), &c, s.as_deref(), true),
        }
        .map_err(|mut e| {
            e.what = name.to_string();
            e
        })?;
        Ok(Image {
            img,
            name: name.to_string(),
        })
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    fn named(&self, mut e: Error) -> Error {
        if e.what.is_empty() {
            e.what.clone_from(&self.name);
        } else {
            e.what = format!("{} {}", self.name, e.what);
        }
        e
    }
    pub fn size(&self) -> Result<u64> {
        self.img.size().map_err(|e| self.named(e))
    }
    /// Grow or shrink to `size` bytes.
    pub fn resize(&self, size: u64) -> Result<()> {
        self.img.resize(size).map_err(|e| self.named(e))
    }
    pub fn read(&self, ofs: u64, buf: &mut [u8]) -> Result<()> {
        self.img.read(ofs, buf).map_err(|e| self.named(e))
    }
    pub fn write(&self, ofs: u64, buf: &[u8]) -> Result<()> {
        self.img.write(ofs, buf).map_err(|e| self.named(e))
    }
    /// Make a range read as zeros (frees the objects it covers entirely).
    pub fn discard(&self, ofs: u64, len: u64) -> Result<()> {
        self.img.discard(ofs, len).map_err(|e| self.named(e))
    }
    pub fn flush(&self) -> Result<()> {
        self.img.flush().map_err(|e| self.named(e))
    }
    /// Bounded asynchronous I/O: at most `depth` requests in flight.
    pub fn aio(&self, depth: usize) -> AioQueue<'_> {
        AioQueue {
            img: self,
            depth: depth.max(1),
            inflight: VecDeque::new(),
        }
    }

    pub fn metadata_get(&self, key: &str) -> Result<Option<String>> {
        self.img
            .metadata_get(&cstr("rbd_metadata_get", key)?)
            .map_err(|e| self.named(e))
    }
    pub fn metadata_set(&self, key: &str, value: &str) -> Result<()> {
        let (k, v) = (
            cstr("rbd_metadata_set", key)?,
            cstr("rbd_metadata_set", value)?,
        );
        self.img.metadata_set(&k, &v).map_err(|e| self.named(e))
    }
    /// Remove a key; a key that is not there is not an error.
    pub fn metadata_remove(&self, key: &str) -> Result<()> {
        match self.img.metadata_remove(&cstr("rbd_metadata_remove", key)?) {
            Err(e) if e.kind == crate::ErrorKind::NotFound => Ok(()),
            r => r.map_err(|e| self.named(e)),
        }
    }
    pub fn metadata_list(&self) -> Result<Vec<(String, String)>> {
        self.img.metadata_list().map_err(|e| self.named(e))
    }

    fn snap(&self, op: SnapOp, name: &str) -> Result<()> {
        self.img
            .snap_op(op, &cstr("rbd_snap", name)?)
            .map_err(|e| self.named(e))
    }
    pub fn snap_create(&self, name: &str) -> Result<()> {
        self.snap(SnapOp::Create, name)
    }
    pub fn snap_remove(&self, name: &str) -> Result<()> {
        self.snap(SnapOp::Remove, name)
    }
    /// Protect a snapshot (needed before cloning it).
    pub fn snap_protect(&self, name: &str) -> Result<()> {
        self.snap(SnapOp::Protect, name)
    }
    /// Unprotect a snapshot (refused, `Busy`, while it has clones).
    pub fn snap_unprotect(&self, name: &str) -> Result<()> {
        self.snap(SnapOp::Unprotect, name)
    }
    pub fn snap_list(&self) -> Result<Vec<Snapshot>> {
        Ok(self
            .img
            .snap_list()
            .map_err(|e| self.named(e))?
            .into_iter()
            .map(|(id, size, name)| Snapshot { id, size, name })
            .collect())
    }
    /// Copy the parent's data into this clone, ending its dependency on the parent.
    pub fn flatten(&self) -> Result<()> {
        self.img.flatten().map_err(|e| self.named(e))
    }

    /// Take the exclusive lock (feature `exclusive-lock`): fails with `ReadOnly` or `Busy`
    /// while another live client holds it.
    pub fn lock_acquire(&self) -> Result<()> {
        self.img.lock_acquire().map_err(|e| self.named(e))
    }
    pub fn lock_release(&self) -> Result<()> {
        self.img.lock_release().map_err(|e| self.named(e))
    }
    pub fn is_lock_owner(&self) -> Result<bool> {
        self.img.is_lock_owner().map_err(|e| self.named(e))
    }
    /// Who holds the exclusive lock (empty: nobody).
    pub fn lock_owners(&self) -> Result<Vec<String>> {
        self.img.lock_owners().map_err(|e| self.named(e))
    }
    /// Break another client's exclusive lock (librbd blocklists that client first).
    pub fn lock_break(&self, owner: &str) -> Result<()> {
        self.img
            .lock_break(&cstr("rbd_lock_break", owner)?)
            .map_err(|e| self.named(e))
    }
    pub fn watchers(&self) -> Result<Vec<Watcher>> {
        Ok(self
            .img
            .watchers()
            .map_err(|e| self.named(e))?
            .into_iter()
            .map(|(address, id)| Watcher { address, id })
            .collect())
    }

    /// librbd's own LUKS2 (AES-256-XTS) format with `passphrase` (slow: argon2id with
    /// librbd's benchmark; used for interoperability checks and the benchmark).
    pub fn encryption_format_luks2(&self, passphrase: &[u8]) -> Result<()> {
        self.img
            .encryption(false, passphrase)
            .map_err(|e| self.named(e))
    }
    /// Load librbd's LUKS2 encryption: from then on this handle reads and writes plaintext
    /// and its size is the payload's. A wrong passphrase is `PermissionDenied`.
    pub fn encryption_load_luks2(&self, passphrase: &[u8]) -> Result<()> {
        self.img
            .encryption(true, passphrase)
            .map_err(|e| self.named(e))
    }
}

/// Asynchronous reads and writes with at most `depth` in flight; results come back in
/// submission order. Dropping the queue waits for what is still in flight.
pub struct AioQueue<'a> {
    img: &'a Image,
    depth: usize,
    inflight: VecDeque<(u64, ffi::Aio<'a>)>,
}

/// A finished request: its offset and its buffer (filled, for a read).
pub type Done = (u64, Vec<u8>);

impl<'a> AioQueue<'a> {
    /// Start a write of `buf` at `ofs`. When the queue was full, first waits for the oldest
    /// request and returns it.
    pub fn write(&mut self, ofs: u64, buf: Vec<u8>) -> Result<Option<Done>> {
        let done = self.make_room()?;
        let a = self
            .img
            .img
            .aio_write(ofs, buf)
            .map_err(|e| self.img.named(e))?;
        self.inflight.push_back((ofs, a));
        Ok(done)
    }
    /// Start a read of `buf.len()` bytes at `ofs` (see [`write`](Self::write)).
    pub fn read(&mut self, ofs: u64, buf: Vec<u8>) -> Result<Option<Done>> {
        let done = self.make_room()?;
        let a = self
            .img
            .img
            .aio_read(ofs, buf)
            .map_err(|e| self.img.named(e))?;
        self.inflight.push_back((ofs, a));
        Ok(done)
    }
    fn make_room(&mut self) -> Result<Option<Done>> {
        if self.inflight.len() >= self.depth {
            return self.wait_oldest();
        }
        Ok(None)
    }
    /// Wait for the oldest request; `None` when nothing is in flight.
    pub fn wait_oldest(&mut self) -> Result<Option<Done>> {
        match self.inflight.pop_front() {
            None => Ok(None),
            Some((ofs, a)) => Ok(Some((ofs, a.wait().map_err(|e| self.img.named(e))?))),
        }
    }
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }
}
