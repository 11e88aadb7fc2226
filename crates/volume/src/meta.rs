//! Per-volume metadata: parameters, tenant, protection (with the wrapped secret), state.
//!
//! On disk: one JSON line followed by `sha256 <hex of that line>`. Written atomically
//! (temp file + fsync + rename + directory fsync); a file whose checksum does not match is
//! refused as corrupt rather than guessed at.

use crate::error::{Error, Result};
use crate::state::{Pending, State};
use crate::vocab::{FsType, ProtectionMode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use strongroom_vault_client::{KvLocation, KvVersion};

pub const META_FILE: &str = "volume.meta";
pub const META_VERSION: u32 = 1;

/// Where the ciphertext lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreSpec {
    /// A sparse file (the default).
    File { path: String },
    /// A raw block device (never created or resized by us, only used).
    Block { path: String },
    /// A Ceph RBD image (`csi-vol-<uuid>` as ceph-csi names them) in a pool and RADOS
    /// namespace ("" = the default), reached as [`CephRef`] says. The volume's metadata is
    /// kept in the image's metadata too, so any node can open it.
    Rbd {
        pool: String,
        #[serde(default)]
        namespace: String,
        image: String,
        ceph: CephRef,
        /// How the image is created (features, data pool); librbd's defaults when unset.
        #[serde(default, skip_serializing_if = "ImageLayout::is_default")]
        layout: ImageLayout,
    },
}

impl StoreSpec {
    /// Whether two specs name the same place (for RBD: pool, namespace and image, whatever
    /// connection each side uses to reach it).
    pub fn same_location(&self, other: &StoreSpec) -> bool {
        match (self, other) {
            (
                StoreSpec::Rbd {
                    pool,
                    namespace,
                    image,
                    ..
                },
                StoreSpec::Rbd {
                    pool: p2,
                    namespace: n2,
                    image: i2,
                    ..
                },
            ) => (pool, namespace, image) == (p2, n2, i2),
            (a, b) => a == b,
        }
    }
}

/// RBD image features as librbd's bit set (ceph-csi's `imageFeatures`, parsed once by
/// `strongroom_rbd::Features::parse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ImageFeatures(pub u64);

impl ImageFeatures {
    /// ceph-csi's comma-separated names (`layering,exclusive-lock,...`); unknown names and
    /// impossible combinations are refused with the reason.
    pub fn parse(list: &str) -> std::result::Result<Self, String> {
        strongroom_rbd::Features::parse(list)
            .map(|f| ImageFeatures(f.0))
            .map_err(|e| e.to_string())
    }
    /// Whether images can be cloned (snapshots and clones need it).
    pub fn has_layering(self) -> bool {
        strongroom_rbd::Features(self.0).contains(strongroom_rbd::Features::LAYERING)
    }
}

/// How a new RBD image is laid out (ceph-csi's `imageFeatures` and `dataPool`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ImageLayout {
    /// `None`: layering, exclusive-lock and deep-flatten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<ImageFeatures>,
    /// A pool for the data objects (e.g. erasure-coded); the header stays in `pool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_pool: Option<String>,
}

impl ImageLayout {
    fn is_default(&self) -> bool {
        *self == ImageLayout::default()
    }
}

/// How to reach a Ceph cluster: never a credential, only where the credential is found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CephRef {
    /// A ceph.conf naming the monitors and the keyring (`None`: `$CEPH_CONF`, then Ceph's
    /// default paths).
    pub conf: Option<String>,
    /// The cephx user id (`admin` for `client.admin`).
    pub user: String,
    /// The monitors, when the user's key is given in memory by the caller
    /// ([`crate::provide_ceph_key`], e.g. from CSI secrets) instead of a keyring file; `conf`
    /// is then unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitors: Option<String>,
    /// The kernel rbd driver's wire protocol (its `ms_mode`; ceph-csi's `mapOptions`
    /// `krbd:ms_mode=...`). `None`: chosen from the monitors' addresses
    /// ([`crate::ceph_conf::kernel_monitors`]). librados (the userspace path) negotiates its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms_mode: Option<crate::ceph_conf::MsMode>,
}

/// How the keyslot secret is protected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "ProtectionRecord", try_from = "ProtectionRecord")]
pub enum Protection {
    /// Wrapped by the tenant's transit key with the volume bound in as context; the blob lives
    /// here, the KMS never stores the secret.
    Envelope {
        mount: String,
        key: String,
        wrapped: Option<String>,
        key_version: u64,
    },
    /// Stored at `<backend>/<volume id>` in KV v1/v2 (ceph-csi `vaulttokens` layout).
    Kv {
        backend: String,
        /// The KV mount, path and version found at creation (so tenants need no `sys/` access
        /// later); `None` until the secret was stored.
        location: Option<KvLocation>,
    },
}

impl Protection {
    pub fn mode(&self) -> ProtectionMode {
        match self {
            Protection::Envelope { .. } => ProtectionMode::Envelope,
            Protection::Kv { .. } => ProtectionMode::Kv,
        }
    }
}

/// [`Protection`] as stored: a KV location is flat, version 0 meaning "not located yet" (the
/// format every existing volume's metadata has).
#[derive(Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
enum ProtectionRecord {
    Envelope {
        mount: String,
        key: String,
        wrapped: Option<String>,
        key_version: u64,
    },
    Kv {
        backend: String,
        mount: String,
        kv_version: u8,
        path: String,
    },
}

impl From<Protection> for ProtectionRecord {
    fn from(p: Protection) -> Self {
        match p {
            Protection::Envelope {
                mount,
                key,
                wrapped,
                key_version,
            } => ProtectionRecord::Envelope {
                mount,
                key,
                wrapped,
                key_version,
            },
            Protection::Kv { backend, location } => {
                let l = location.unwrap_or_else(|| KvLocation {
                    mount: String::new(),
                    path: String::new(),
                    version: KvVersion::V1,
                });
                ProtectionRecord::Kv {
                    backend,
                    kv_version: if l.mount.is_empty() {
                        0
                    } else {
                        l.version.number()
                    },
                    mount: l.mount,
                    path: l.path,
                }
            }
        }
    }
}

impl TryFrom<ProtectionRecord> for Protection {
    type Error = String;
    fn try_from(r: ProtectionRecord) -> std::result::Result<Self, String> {
        Ok(match r {
            ProtectionRecord::Envelope {
                mount,
                key,
                wrapped,
                key_version,
            } => Protection::Envelope {
                mount,
                key,
                wrapped,
                key_version,
            },
            ProtectionRecord::Kv {
                backend,
                kv_version: 0,
                ..
            } => Protection::Kv {
                backend,
                location: None,
            },
            ProtectionRecord::Kv {
                backend,
                mount,
                kv_version,
                path,
            } => Protection::Kv {
                backend,
                location: Some(KvLocation {
                    mount,
                    path,
                    version: KvVersion::from_number(kv_version)
                        .ok_or_else(|| format!("unknown KV version {kv_version}"))?,
                }),
            },
        })
    }
}

/// The LUKS2 parameters the volume was formatted with (the brief's deterministic profile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LuksParams {
    pub cipher: String,
    pub key_size_bits: u32,
    pub sector_size: u32,
    pub pbkdf: String,
    pub pbkdf_iterations: u32,
    pub data_offset: u64,
    pub uuid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMeta {
    pub version: u32,
    pub id: String,
    pub tenant: String,
    pub cluster_id: String,
    pub created_at: u64,
    /// Usable (requested) size in bytes; the store holds this plus the LUKS2 header.
    pub size: u64,
    pub store: StoreSpec,
    pub luks: LuksParams,
    pub protection: Protection,
    pub state: State,
    /// Filesystem type to make on first mount.
    pub fs_type: FsType,
    /// Set once the filesystem was made: never mkfs again (decided by state, not a probe).
    pub filesystem_created: bool,
    /// The volume grew but its filesystem could not be grown online (e.g. ext4 online resize
    /// needs CAP_SYS_RESOURCE): grow it at the next mount.
    #[serde(default)]
    pub fs_grow_pending: bool,
    pub pending: Option<Pending>,
    /// Unix seconds of the last keyslot-secret rotation and KEK rewrap.
    pub slot_rotated_at: Option<u64>,
    pub kek_rotated_at: Option<u64>,
    pub shredded_at: Option<u64>,
    /// Bumped on every write.
    pub generation: u64,
    /// The volume this one was cloned from (a snapshot or a clone), while its image depends
    /// on that volume's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// Where a cloned volume came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The source volume's id (its metadata holds the secret that opened the copied header
    /// until this volume's own keyslot replaced it).
    pub volume: String,
    /// The RBD snapshot of the source image the clone was made from.
    pub snap: String,
    /// Clones between this image and one without a parent (ceph-csi's clone depth); the
    /// image is flattened, and the depth is 0, once it would exceed the limit.
    pub depth: u32,
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsync {}", dir.display()), e))
}

impl VolumeMeta {
    pub fn encode(&self) -> Result<Vec<u8>> {
        let body = serde_json::to_string(self)
            .map_err(|e| Error::Internal(format!("encode metadata: {e}")))?;
        let sum = hex::encode(Sha256::digest(body.as_bytes()));
        Ok(format!("{body}\nsha256 {sum}\n").into_bytes())
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| Error::Corrupt("metadata is not UTF-8".into()))?;
        let mut lines = text.lines();
        let body = lines.next().unwrap_or_default();
        let sum = lines
            .next()
            .and_then(|l| l.strip_prefix("sha256 "))
            .ok_or_else(|| Error::Corrupt("metadata has no checksum line (torn write?)".into()))?;
        let want = hex::encode(Sha256::digest(body.as_bytes()));
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            want.as_bytes(),
            sum.trim().as_bytes(),
        )) {
            return Err(Error::Corrupt("metadata checksum mismatch".into()));
        }
        let m: VolumeMeta = serde_json::from_str(body)
            .map_err(|e| Error::Corrupt(format!("metadata does not parse: {e}")))?;
        if m.version != META_VERSION {
            return Err(Error::Corrupt(format!(
                "unsupported metadata version {}",
                m.version
            )));
        }
        Ok(m)
    }

    /// Read `<dir>/volume.meta`.
    pub fn load(dir: &Path) -> Result<Self> {
        let p = dir.join(META_FILE);
        let bytes = fs::read(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound(format!("no volume metadata at {}", p.display()))
            } else {
                Error::io(format!("read {}", p.display()), e)
            }
        })?;
        Self::decode(&bytes)
    }

    /// Write `<dir>/volume.meta` atomically and durably (and into the store, if it keeps
    /// metadata), as the next generation.
    pub fn store(&mut self, dir: &Path) -> Result<()> {
        self.generation += 1;
        let bytes = self.store_local(dir)?;
        // A store that keeps metadata (RBD: the image's) gets the same record.
        crate::store::from_spec(&self.store).put_meta(&bytes)
    }

    /// Write this record, as it is, to `<dir>/volume.meta` only; returns what was written.
    pub fn store_local(&self, dir: &Path) -> Result<Vec<u8>> {
        let bytes = self.encode()?;
        let tmp = dir.join(format!("{META_FILE}.tmp"));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
        drop(f);
        fs::rename(&tmp, dir.join(META_FILE))
            .map_err(|e| Error::io("rename metadata into place", e))?;
        fsync_dir(dir)?;
        Ok(bytes)
    }

    /// Move to `next` and persist, refusing illegal transitions.
    pub fn transition(&mut self, dir: &Path, next: State) -> Result<()> {
        if self.state == next {
            return Ok(());
        }
        if !self.state.can_become(next) {
            return Err(Error::FailedPrecondition(format!(
                "volume {} cannot go from {} to {}",
                self.id,
                self.state.as_str(),
                next.as_str()
            )));
        }
        self.state = next;
        self.store(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VolumeMeta {
        VolumeMeta {
            version: META_VERSION,
            id: "v1".into(),
            tenant: "a".into(),
            cluster_id: "c".into(),
            created_at: 1,
            size: 1 << 20,
            store: StoreSpec::File { path: "/x".into() },
            luks: LuksParams {
                cipher: "aes-xts-plain64".into(),
                key_size_bits: 512,
                sector_size: 4096,
                pbkdf: "pbkdf2-sha256".into(),
                pbkdf_iterations: 1000,
                data_offset: 16 << 20,
                uuid: None,
            },
            protection: Protection::Envelope {
                mount: "transit".into(),
                key: "tenant-a".into(),
                wrapped: Some("vault:v1:abc".into()),
                key_version: 1,
            },
            state: State::Formatted,
            fs_type: FsType::Ext4,
            filesystem_created: false,
            fs_grow_pending: false,
            pending: Some(Pending::Resize { new_size: 2 << 20 }),
            slot_rotated_at: None,
            kek_rotated_at: None,
            shredded_at: None,
            generation: 0,
            origin: None,
        }
    }

    #[test]
    fn roundtrip_and_checksum() {
        let d = tempfile::tempdir().unwrap();
        let mut m = sample();
        m.store(d.path()).unwrap();
        m.store(d.path()).unwrap();
        let back = VolumeMeta::load(d.path()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.generation, 2);
        assert!(!d.path().join("volume.meta.tmp").exists());
        // One flipped byte, a torn (truncated) file: refused as corrupt, never guessed at.
        let p = d.path().join(META_FILE);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[10] ^= 1;
        assert!(matches!(VolumeMeta::decode(&bytes), Err(Error::Corrupt(_))));
        let good = std::fs::read(&p).unwrap();
        assert!(matches!(
            VolumeMeta::decode(&good[..good.len() / 2]),
            Err(Error::Corrupt(_))
        ));
        assert!(matches!(
            VolumeMeta::load(&d.path().join("nope")),
            Err(Error::NotFound(_))
        ));
    }

    /// The KV location is stored in the format existing volumes have (flat, version 0 = not
    /// located yet) and read back as the one KV version type.
    #[test]
    fn kv_protection_keeps_its_stored_format() {
        let mut m = sample();
        m.protection = Protection::Kv {
            backend: "secret/strongroom/a".into(),
            location: None,
        };
        let body = String::from_utf8(m.encode().unwrap()).unwrap();
        assert!(
            body.contains(
                r#""mode":"kv","backend":"secret/strongroom/a","mount":"","kv_version":0,"path":"""#
            ),
            "{body}"
        );
        assert_eq!(VolumeMeta::decode(body.as_bytes()).unwrap(), m);
        m.protection = Protection::Kv {
            backend: "secret/strongroom/a".into(),
            location: Some(KvLocation {
                mount: "secret".into(),
                path: "strongroom/a/v1".into(),
                version: KvVersion::V2,
            }),
        };
        let body = String::from_utf8(m.encode().unwrap()).unwrap();
        assert!(body.contains(r#""mount":"secret","kv_version":2,"path":"strongroom/a/v1""#));
        assert_eq!(VolumeMeta::decode(body.as_bytes()).unwrap(), m);
        // An unknown version or filesystem is corrupt metadata, never a guess.
        let line = body.lines().next().unwrap();
        for (from, to) in [
            (r#""kv_version":2"#, r#""kv_version":3"#),
            (r#""fs_type":"ext4""#, r#""fs_type":"btrfs""#),
        ] {
            let bad = line.replace(from, to);
            let sum = hex::encode(Sha256::digest(bad.as_bytes()));
            let bad = format!("{bad}\nsha256 {sum}\n");
            assert!(
                matches!(VolumeMeta::decode(bad.as_bytes()), Err(Error::Corrupt(_))),
                "{to}"
            );
        }
    }

    #[test]
    fn illegal_transition_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut m = sample();
        m.state = State::Shredded;
        assert!(matches!(
            m.transition(d.path(), State::KeyProtected),
            Err(Error::FailedPrecondition(_))
        ));
    }
}
