//! Connections ([`Cluster`]) and pools ([`IoCtx`]).

use crate::error::{Error, Result};
use crate::ffi::{self, cstr};
use crate::image::Image;
use std::ffi::CString;
use std::path::Path;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Seconds to wait for the monitors when connecting (and for each monitor command).
const CONNECT_TIMEOUT_S: &std::ffi::CStr = c"20";

/// A connected client of one Ceph cluster. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct Cluster {
    h: Arc<ffi::Rados>,
}

fn valid_user(user: &str) -> Result<()> {
    let ok = !user.is_empty()
        && user.len() <= 128
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("connect", format!("Ceph user id {user:?}")))
    }
}

impl Cluster {
    /// Connect as `client.<user>` with a ceph.conf (`None`: `$CEPH_CONF`, then Ceph's default
    /// paths) naming the monitors and the keyring.
    pub fn from_conf(conf: Option<&Path>, user: &str) -> Result<Cluster> {
        let h = Self::handle(user)?;
        let path = conf
            .map(|p| cstr("rados_conf_read_file", &p.to_string_lossy()))
            .transpose()?;
        h.read_conf(path.as_deref())?;
        Self::connect(h)
    }

    /// Connect as `client.<user>` to `monitors` (`host:port,...` or Ceph's `[v2:...]` form)
    /// with the user's base64 cephx `key` (ceph-csi's `userID`/`userKey`). No file or
    /// environment is read; the key is copied into a zeroized buffer for librados.
    pub fn from_key(monitors: &str, user: &str, key: &str) -> Result<Cluster> {
        let base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
        if key.is_empty() || key.len() > 1024 || !key.chars().all(base64) {
            return Err(Error::invalid("connect", "the Ceph key is not base64"));
        }
        let h = Self::handle(user)?;
        h.conf_set(c"mon_host", &cstr("connect", monitors)?)?;
        let mut secret = Zeroizing::new(Vec::with_capacity(key.len() + 1));
        secret.extend_from_slice(key.as_bytes());
        secret.push(0);
        let secret_c = std::ffi::CStr::from_bytes_with_nul(&secret)
            .map_err(|_| Error::invalid("connect", "the Ceph key is not base64"))?;
        h.conf_set(c"key", secret_c)?;
        Self::connect(h)
    }

    fn handle(user: &str) -> Result<ffi::Rados> {
        valid_user(user)?;
        let h = ffi::Rados::create(&cstr("rados_create", &format!("client.{user}"))?)?;
        Ok(h)
    }

    fn connect(h: ffi::Rados) -> Result<Cluster> {
        // A client of ours needs no admin socket or log file of its own; bounded waits.
        h.conf_set(c"admin_socket", c"")?;
        h.conf_set(c"log_file", c"")?;
        h.conf_set(c"client_mount_timeout", CONNECT_TIMEOUT_S)?;
        h.conf_set(c"rados_mon_op_timeout", CONNECT_TIMEOUT_S)?;
        // Clone format 2: clones of unprotected snapshots, and a snapshot with clones can be
        // removed (it waits in the snapshot trash until its last clone is gone).
        h.conf_set(c"rbd_default_clone_format", c"2")?;
        h.connect()?;
        Ok(Cluster { h: Arc::new(h) })
    }

    /// A pool (and RADOS namespace; "" = the default one). A namespace that does not exist
    /// yet is created when `create_namespace` is true (RBD needs it registered).
    pub fn ioctx(&self, pool: &str, namespace: &str, create_namespace: bool) -> Result<IoCtx> {
        let io = ffi::Io::create(
            self.h.clone(),
            &cstr("rados_ioctx_create", pool)?,
            &cstr("rados_ioctx_create", namespace)?,
        )?;
        if !namespace.is_empty() {
            let ns = cstr("rbd_namespace", namespace)?;
            if !io.namespace_exists(&ns)? {
                if !create_namespace {
                    return Err(Error::errno(
                        "rbd_namespace_exists",
                        namespace,
                        libc::ENOENT,
                    ));
                }
                // the default-namespace handle registers it; two creators racing is fine
                let root = ffi::Io::create(self.h.clone(), &cstr("", pool)?, c"")?;
                match root.namespace_create(&ns) {
                    Err(e) if e.kind == crate::ErrorKind::AlreadyExists => {}
                    r => r?,
                }
            }
        }
        Ok(IoCtx {
            io: Arc::new(io),
            pool: pool.to_string(),
            namespace: namespace.to_string(),
        })
    }

    /// This client's id in the cluster (`client.<id>` in lock owner and watcher lists).
    pub fn instance_id(&self) -> u64 {
        self.h.instance_id()
    }

    /// Blocklist a client address (from [`Image::watchers`]) for `secs` seconds: its I/O and
    /// its lock are refused from then on (how a dead node's attach is fenced).
    pub fn blocklist(&self, addr: &str, secs: u32) -> Result<()> {
        self.h
            .blocklist_add(&cstr("rados_blocklist_add", addr)?, secs)
    }
}

/// Image features, as ceph-csi's `imageFeatures` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features(pub u64);

impl Features {
    pub const LAYERING: Features = Features(1 << 0);
    pub const EXCLUSIVE_LOCK: Features = Features(1 << 2);
    pub const OBJECT_MAP: Features = Features(1 << 3);
    pub const FAST_DIFF: Features = Features(1 << 4);
    pub const DEEP_FLATTEN: Features = Features(1 << 5);
    const NAMES: [(&'static str, Features); 5] = [
        ("layering", Self::LAYERING),
        ("exclusive-lock", Self::EXCLUSIVE_LOCK),
        ("object-map", Self::OBJECT_MAP),
        ("fast-diff", Self::FAST_DIFF),
        ("deep-flatten", Self::DEEP_FLATTEN),
    ];

    /// What a Strongroom volume gets by default: clones and the exclusive lock.
    pub fn default_for_volumes() -> Features {
        Features(Self::LAYERING.0 | Self::EXCLUSIVE_LOCK.0 | Self::DEEP_FLATTEN.0)
    }

    /// Parse a comma-separated list (`layering,exclusive-lock`). Unknown names, and
    /// object-map without exclusive-lock or fast-diff without object-map, are refused.
    pub fn parse(list: &str) -> Result<Features> {
        let mut f = 0u64;
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (_, bit) = Self::NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| {
                    Error::invalid("imageFeatures", format!("unknown feature {name:?}"))
                })?;
            f |= bit.0;
        }
        let has = |b: Features| f & b.0 != 0;
        if has(Self::OBJECT_MAP) && !has(Self::EXCLUSIVE_LOCK) {
            return Err(Error::invalid(
                "imageFeatures",
                "object-map needs exclusive-lock",
            ));
        }
        if has(Self::FAST_DIFF) && !has(Self::OBJECT_MAP) {
            return Err(Error::invalid(
                "imageFeatures",
                "fast-diff needs object-map",
            ));
        }
        Ok(Features(f))
    }

    pub fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }
}

/// An image in the RBD trash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrashEntry {
    pub id: String,
    pub name: String,
}

/// One pool + RADOS namespace of a cluster. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct IoCtx {
    io: Arc<ffi::Io>,
    pool: String,
    namespace: String,
}

impl IoCtx {
    pub fn pool(&self) -> &str {
        &self.pool
    }
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    pub(crate) fn raw(&self) -> &Arc<ffi::Io> {
        &self.io
    }
    fn name(op: &'static str, name: &str) -> Result<CString> {
        if name.is_empty() || name.len() > 250 || name.contains(['/', '@']) {
            return Err(Error::invalid(op, format!("image name {name:?}")));
        }
        cstr(op, name)
    }
    /// Create an image of `size` bytes (4 MiB objects).
    pub fn create(&self, name: &str, size: u64, features: Features) -> Result<()> {
        self.create_with(name, size, features, None)
    }
    /// Create an image whose data objects live in `data_pool` (an erasure-coded pool, as
    /// ceph-csi's `dataPool`); its header and metadata stay in this pool.
    pub fn create_with(
        &self,
        name: &str,
        size: u64,
        features: Features,
        data_pool: Option<&str>,
    ) -> Result<()> {
        let dp = data_pool.map(|p| cstr("rbd_create", p)).transpose()?;
        self.io.create_image(
            &Self::name("rbd_create", name)?,
            size,
            features.0,
            dp.as_deref(),
        )
    }
    /// Open an image read-write.
    pub fn open(&self, name: &str) -> Result<Image> {
        Image::open(self, name, Self::name("rbd_open", name)?, None)
    }
    /// Open an image read-only, at a snapshot if given.
    pub fn open_read_only(&self, name: &str, snap: Option<&str>) -> Result<Image> {
        let s = snap.map(|s| cstr("rbd_open", s)).transpose()?;
        Image::open(self, name, Self::name("rbd_open", name)?, Some(s))
    }
    /// Clone `parent@snap` (a protected snapshot) as `child` in `into`.
    pub fn clone_image(
        &self,
        parent: &str,
        snap: &str,
        into: &IoCtx,
        child: &str,
        features: Features,
    ) -> Result<()> {
        self.io.clone_image(
            &Self::name("rbd_clone", parent)?,
            &cstr("rbd_clone", snap)?,
            &into.io,
            &Self::name("rbd_clone", child)?,
            features.0,
        )
    }
    /// Remove an image (it must have no snapshots, no clones and no watchers).
    pub fn remove(&self, name: &str) -> Result<()> {
        self.io.remove_image(&Self::name("rbd_remove", name)?)
    }
    /// Move an image to the trash (the way to delete one whose snapshots still have clones).
    pub fn trash_move(&self, name: &str) -> Result<()> {
        self.io.trash_move(&Self::name("rbd_trash_move", name)?)
    }
    pub fn trash_list(&self) -> Result<Vec<TrashEntry>> {
        Ok(self
            .io
            .trash_list()?
            .into_iter()
            .map(|(id, name)| TrashEntry { id, name })
            .collect())
    }
    /// Remove an image from the trash for good (refused while clones depend on it).
    pub fn trash_remove(&self, id: &str) -> Result<()> {
        self.io.trash_remove(&cstr("rbd_trash_remove", id)?)
    }
    /// Names of the images (not those in the trash).
    pub fn list(&self) -> Result<Vec<String>> {
        self.io.list_images()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn features_parse_ceph_csi_names_and_refuse_bad_combinations() {
        let f = Features::parse("layering, exclusive-lock,object-map,fast-diff").unwrap();
        assert!(f.contains(Features::LAYERING) && f.contains(Features::FAST_DIFF));
        assert_eq!(Features::parse("").unwrap(), Features(0));
        for bad in [
            "layering,journaling",
            "object-map",
            "exclusive-lock,fast-diff",
        ] {
            let e = Features::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn errno_kinds_and_messages_without_secrets() {
        assert_eq!(ErrorKind::from_errno(libc::ENOENT), ErrorKind::NotFound);
        assert_eq!(
            ErrorKind::from_errno(libc::ESHUTDOWN),
            ErrorKind::Blocklisted
        );
        assert_eq!(ErrorKind::from_errno(libc::EIO), ErrorKind::Other);
        let e = Cluster::from_key("127.0.0.1:1", "admin", "secret key!")
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(!e.to_string().contains("secret key!"));
        let e = Cluster::from_key("127.0.0.1:1", "", "QUJD").err().unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }
}
