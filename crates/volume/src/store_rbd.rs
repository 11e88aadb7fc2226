//! The Ceph RBD backing store: a volume is an RBD image; the LUKS2 header sits at image offset
//! 0 exactly as `rbd encryption format luks2` lays it out (4096-byte sectors, data at 16 MiB),
//! so librbd's `encryption_load` and, after `rbd export`, cryptsetup open our images. The
//! volume's metadata record is also kept in the image's metadata ([`RBD_META_KEY`]).
//!
//! Connections are made once per (ceph.conf, user) and shared by every image of a process.

use crate::ceph_conf::{kernel_monitors, ClientConf};
use crate::datapath::krbd::{KrbdCredentials, KrbdImage};
use crate::error::{Error, Result};
use crate::meta::{CephRef, ImageLayout, StoreSpec};
use crate::rbd_claim::{self, Claimant};
use crate::store::BackingStore;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use strongroom_luks::BlockDevice;
use strongroom_rbd::{Cluster, ErrorKind, Features, Image, IoCtx};
use strongroom_vault_client::SecretString;

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

/// Where a connection goes: a ceph.conf (with its keyring), or monitors with a key given in
/// memory.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Source {
    Conf(Option<PathBuf>),
    Monitors(String),
}

type ConnKey = (Source, String);

static CONNS: Mutex<Option<HashMap<ConnKey, Cluster>>> = Mutex::new(None);
/// cephx keys given by callers ([`provide_ceph_key`]), by user id; zeroized when replaced.
static KEYS: Mutex<Option<HashMap<String, SecretString>>> = Mutex::new(None);

/// Give the key of Ceph user `user` (CSI secrets' `userID`/`userKey`) for the connections
/// of [`CephRef`]s that name monitors. Held in memory only (as librados holds it once
/// connected); a different key for the same user replaces it and drops that user's
/// connections, so the next operation proves the new key.
pub fn provide_ceph_key(user: &str, key: SecretString) {
    let mut keys = KEYS.lock().unwrap_or_else(|e| e.into_inner());
    let keys = keys.get_or_insert_with(HashMap::new);
    let same = keys.get(user).is_some_and(|k| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            k.expose().as_bytes(),
            key.expose().as_bytes(),
        ))
    });
    if same {
        return;
    }
    keys.insert(user.to_owned(), key);
    let mut g = CONNS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(map) = g.as_mut() {
        map.retain(|(src, u), _| !(u == user && matches!(src, Source::Monitors(_))));
    }
}

/// The key a caller gave for the user of `spec` (an RBD store reached by monitors), to
/// hand on to a process that serves it (a volume holder).
pub(crate) fn given_key(spec: &StoreSpec) -> Option<(String, SecretString)> {
    let StoreSpec::Rbd {
        ceph: CephRef {
            monitors: Some(_),
            user,
            ..
        },
        ..
    } = spec
    else {
        return None;
    };
    let keys = KEYS.lock().unwrap_or_else(|e| e.into_inner());
    let key = keys.as_ref()?.get(user)?;
    Some((user.clone(), key.clone()))
}

fn connect_new(src: &Source, user: &str) -> Result<Cluster> {
    let r = match src {
        Source::Conf(conf) => Cluster::from_conf(conf.as_deref(), user),
        Source::Monitors(mons) => {
            let keys = KEYS.lock().unwrap_or_else(|e| e.into_inner());
            let key = keys.as_ref().and_then(|k| k.get(user)).ok_or_else(|| {
                Error::Unauthenticated(format!(
                    "no key for Ceph user {user:?}: the request's secrets must carry \
                     userID and userKey"
                ))
            })?;
            Cluster::from_key(mons, user, key.expose())
        }
    };
    r.map_err(|e| ceph_error("connect to Ceph", e))
}

fn connect(ceph: &CephRef) -> Result<Cluster> {
    let src = match &ceph.monitors {
        Some(m) => Source::Monitors(m.clone()),
        None => Source::Conf(ceph.conf.as_ref().map(PathBuf::from)),
    };
    let key = (src, ceph.user.clone());
    let mut g = CONNS.lock().unwrap_or_else(|e| e.into_inner());
    let map = g.get_or_insert_with(HashMap::new);
    if let Some(c) = map.get(&key) {
        return Ok(c.clone());
    }
    let c = connect_new(&key.0, &key.1)?;
    map.insert(key, c.clone());
    Ok(c)
}

pub struct RbdStore {
    pool: String,
    namespace: String,
    image: String,
    ceph: CephRef,
    layout: ImageLayout,
}

impl RbdStore {
    pub fn new(pool: &str, namespace: &str, image: &str, ceph: &CephRef) -> Self {
        RbdStore {
            pool: pool.into(),
            namespace: namespace.into(),
            image: image.into(),
            ceph: ceph.clone(),
            layout: ImageLayout::default(),
        }
    }
    pub fn with_layout(mut self, layout: &ImageLayout) -> Self {
        self.layout = layout.clone();
        self
    }
    /// The store of an RBD [`StoreSpec`]; `None` for other kinds.
    pub fn of(spec: &StoreSpec) -> Option<Self> {
        match spec {
            StoreSpec::Rbd {
                pool,
                namespace,
                image,
                ceph,
                layout,
            } => Some(RbdStore::new(pool, namespace, image, ceph).with_layout(layout)),
            _ => None,
        }
    }
    /// A value the image keeps under `key` in its metadata (`None`: no such key).
    pub fn get_attr(&self, key: &str) -> Result<Option<String>> {
        self.image()?
            .metadata_get(key)
            .map_err(|e| ceph_error("read metadata of the RBD image", e))
    }
    /// Keep `value` under `key` in the image's metadata.
    pub fn put_attr(&self, key: &str, value: &str) -> Result<()> {
        self.image()?
            .metadata_set(key, value)
            .map_err(|e| ceph_error("store metadata in the RBD image", e))
    }
    pub(crate) fn ioctx(&self) -> Result<IoCtx> {
        connect(&self.ceph)?
            .ioctx(&self.pool, &self.namespace, true)
            .map_err(|e| ceph_error("open pool", e))
    }
    pub(crate) fn image(&self) -> Result<Image> {
        self.ioctx()?
            .open(&self.image)
            .map_err(|e| ceph_error("open RBD image", e))
    }
    pub(crate) fn image_name(&self) -> &str {
        &self.image
    }
    /// The addresses of the clients watching the header of `img` (this store's image, open),
    /// but this process's own.
    pub(crate) fn header_watchers(&self, img: &Image) -> Result<Vec<String>> {
        let me = connect(&self.ceph)?.instance_id() as i64;
        let w = img
            .watchers()
            .map_err(|e| ceph_error("list the RBD image's watchers", e))?;
        Ok(w.into_iter()
            .filter(|w| w.id != me)
            .map(|w| w.address)
            .collect())
    }
    /// Blocklist a (dead) client's address for `secs` seconds.
    pub(crate) fn fence(&self, addr: &str, secs: u32) -> Result<()> {
        connect(&self.ceph)?
            .blocklist(addr, secs)
            .map_err(|e| ceph_error("blocklist a dead client", e))
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
        let features = self
            .layout
            .features
            .map_or_else(Features::default_for_volumes, |f| Features(f.0));
        let data_pool = self.layout.data_pool.as_deref();
        match io.create_with(&self.image, bytes, features, data_pool) {
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
    fn open_exclusive(&self, claim: &str) -> Result<Box<dyn BlockDevice>> {
        let img = self.image()?;
        // Strongroom's attach claim first (the kernel path's mappings hold no lock while
        // idle), then librbd's exclusive lock, taken explicitly: held until this handle
        // closes (or the process dies and its watch expires); another client's acquire is
        // refused, and a kernel mapping's writes get EROFS.
        rbd_claim::claim(self, claim, Claimant::Librbd)?;
        let locked = match img.lock_acquire() {
            Ok(()) => return Ok(Box::new(RbdDevice::new(img))),
            Err(e) if matches!(e.kind(), ErrorKind::ReadOnly | ErrorKind::Busy) => {
                let owners = img.lock_owners().unwrap_or_default().join(", ");
                Error::FailedPrecondition(format!(
                    "RBD image {} is attached read-write elsewhere (exclusive lock held by {owners})",
                    self.image
                ))
            }
            Err(e) => ceph_error("lock RBD image", e),
        };
        let _ = rbd_claim::release(self, claim);
        Err(locked)
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
        self.remove_snapshots()?;
        let r = match io.remove(&self.image) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            // snapshots with clones: the image waits in the trash until they are gone
            Err(e) if e.kind() == ErrorKind::Busy => io
                .trash_move(&self.image)
                .map_err(|e| ceph_error("move RBD image to the trash", e)),
            Err(e) => Err(ceph_error("remove RBD image", e)),
        };
        r.and_then(|()| purge_trash(&io))
    }
}

impl RbdStore {
    /// The image as the kernel driver names it, and how the kernel reaches the cluster: the
    /// monitors' addresses and `ms_mode` ([`kernel_monitors`]) and the user's key (given in memory, or from the ceph.conf's
    /// keyring).
    pub(crate) fn kernel_target(&self) -> Result<(KrbdImage, KrbdCredentials)> {
        let user = self.ceph.user.clone();
        let (mon_host, key) = match &self.ceph.monitors {
            Some(m) => {
                let keys = KEYS.lock().unwrap_or_else(|e| e.into_inner());
                let key = keys.as_ref().and_then(|k| k.get(&user)).cloned();
                let key = key.ok_or_else(|| {
                    Error::Unauthenticated(format!(
                        "no key for Ceph user {user:?}: the request's secrets must carry \
                         userID and userKey"
                    ))
                })?;
                (m.clone(), key)
            }
            None => {
                let c = ClientConf::read(self.ceph.conf.as_deref().map(Path::new), &user)?;
                (c.mon_host()?.to_owned(), c.key(&user)?)
            }
        };
        let img = KrbdImage {
            pool: self.pool.clone(),
            namespace: self.namespace.clone(),
            image: self.image.clone(),
        };
        let monitors = kernel_monitors(&mon_host, self.ceph.ms_mode)?;
        Ok((
            img,
            KrbdCredentials {
                monitors,
                user,
                key,
            },
        ))
    }
}

impl RbdStore {
    /// Remove every snapshot of the image (one with clones goes to the snapshot trash, and
    /// away with its last clone).
    fn remove_snapshots(&self) -> Result<()> {
        let Some(img) = self.image_opt()? else {
            return Ok(());
        };
        let snaps = img
            .snap_list()
            .map_err(|e| ceph_error("list snapshots", e))?;
        for s in snaps {
            match img.snap_remove(&s.name) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    return Err(ceph_error("remove snapshot", e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Make this image a clone of `src` as it is now: a snapshot `snap` of `src`, the clone,
    /// then the snapshot removed (it stays in the snapshot trash while the clone needs it).
    /// Re-runnable after a crash at any point. `flatten`: copy the data in and drop the
    /// dependency (the clone chain got too deep).
    pub fn clone_from(&self, src: &RbdStore, snap: &str, flatten: bool) -> Result<()> {
        if self.image_opt()?.is_none() {
            let s = src.image()?;
            let have = s.snap_list().map_err(|e| ceph_error("list snapshots", e))?;
            if !have.iter().any(|x| x.name == snap) {
                s.snap_create(snap)
                    .map_err(|e| ceph_error("snapshot the source image", e))?;
            }
            crate::manager::fault("clone:snapped");
            let features = self
                .layout
                .features
                .map_or_else(Features::default_for_volumes, |f| Features(f.0));
            src.ioctx()?
                .clone_image(&src.image, snap, &self.ioctx()?, &self.image, features)
                .map_err(|e| ceph_error("clone the source image", e))?;
            crate::manager::fault("clone:cloned");
        }
        if flatten {
            self.image()?
                .flatten()
                .map_err(|e| ceph_error("flatten the clone", e))?;
        }
        match src.image()?.snap_remove(snap) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(ceph_error("remove snapshot", e)),
            _ => Ok(()),
        }
    }
}

/// Remove from the trash every image of ours (`csi-`) that nothing depends on any more;
/// again while a pass removed one (removing a clone frees its parent).
fn purge_trash(io: &IoCtx) -> Result<()> {
    loop {
        let entries = io
            .trash_list()
            .map_err(|e| ceph_error("list the RBD trash", e))?;
        let mut removed = false;
        for t in entries.iter().filter(|t| t.name.starts_with("csi-")) {
            match io.trash_remove(&t.id) {
                Ok(()) => removed = true,
                Err(e) if matches!(e.kind(), ErrorKind::Busy | ErrorKind::NotFound) => {}
                Err(e) => return Err(ceph_error("remove an image from the trash", e)),
            }
        }
        if !removed {
            return Ok(());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn store(ceph: CephRef) -> RbdStore {
        RbdStore::new("rbd", "tenant-a", "csi-vol-x", &ceph)
    }

    #[test]
    fn kernel_target_from_monitors_and_a_given_key() {
        let ceph = CephRef {
            conf: None,
            user: "krbd-test-given".into(),
            monitors: Some("[v2:10.0.0.1:3300,v1:10.0.0.1:6789],10.0.0.2".into()),
            ms_mode: None,
        };
        let e = store(ceph.clone()).kernel_target().err().unwrap();
        assert_eq!(e.kind(), crate::ErrorKind::Unauthenticated, "{e}");
        provide_ceph_key("krbd-test-given", SecretString::new("AQBgiven=="));
        let (img, cred) = store(ceph).kernel_target().unwrap();
        assert_eq!(
            (img.pool.as_str(), img.namespace.as_str()),
            ("rbd", "tenant-a")
        );
        assert_eq!(img.image, "csi-vol-x");
        assert_eq!(cred.monitors.addrs, ["10.0.0.1:6789", "10.0.0.2:6789"]);
        assert_eq!(cred.monitors.ms_mode, None);
        assert_eq!(cred.user, "krbd-test-given");
        assert_eq!(cred.key.expose(), "AQBgiven==");
    }

    #[test]
    fn kernel_target_of_v2_only_monitors_and_an_explicit_mode() {
        provide_ceph_key("krbd-test-v2", SecretString::new("AQBv2=="));
        let mut ceph = CephRef {
            conf: None,
            user: "krbd-test-v2".into(),
            monitors: Some("[v2:10.0.0.1:3300] [v2:10.0.0.2:3300]".into()),
            ms_mode: None,
        };
        let (_, cred) = store(ceph.clone()).kernel_target().unwrap();
        assert_eq!(cred.monitors.addrs, ["10.0.0.1:3300", "10.0.0.2:3300"]);
        assert_eq!(cred.monitors.ms_mode, Some(crate::MsMode::PreferCrc));
        ceph.ms_mode = Some(crate::MsMode::Secure);
        let (_, cred) = store(ceph.clone()).kernel_target().unwrap();
        assert_eq!(cred.monitors.ms_mode, Some(crate::MsMode::Secure));
        ceph.ms_mode = Some(crate::MsMode::Legacy);
        let e = store(ceph).kernel_target().err().unwrap();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{e}");
    }

    #[test]
    fn kernel_target_from_a_ceph_conf_and_its_keyring() {
        let d = tempfile::tempdir().unwrap();
        let keyring = d.path().join("keyring");
        std::fs::write(&keyring, "[client.csi]\n\tkey = AQBconf==\n").unwrap();
        let conf = d.path().join("ceph.conf");
        let text = format!(
            "[global]\nmon_host = [v2:127.0.0.1:3300,v1:127.0.0.1:6789]\nkeyring = {}\n",
            keyring.display()
        );
        std::fs::write(&conf, text).unwrap();
        let ceph = CephRef {
            conf: Some(conf.to_string_lossy().into_owned()),
            user: "csi".into(),
            monitors: None,
            ms_mode: None,
        };
        let (_, cred) = store(ceph).kernel_target().unwrap();
        assert_eq!(cred.monitors.addrs, ["127.0.0.1:6789"]);
        assert_eq!(cred.key.expose(), "AQBconf==");
    }
}
