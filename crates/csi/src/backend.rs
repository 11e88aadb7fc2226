//! The seam between the CSI services and the volume manager.
//!
//! The gRPC layer validates requests, resolves parameters, takes the per-volume lock and
//! then calls one method of [`VolumeBackend`] on a blocking thread. The adapter over
//! `strongroom_volume::Manager` implements this trait; nothing else in this crate knows the
//! manager. Methods are synchronous (the manager does blocking I/O and KMS calls).
//!
//! Contract for implementations (the CSI layer relies on it):
//! * Errors are [`CsiError`] classes: KMS down → `Unavailable`, bad/expired token →
//!   `Unauthenticated`, another tenant's token → `PermissionDenied`, unknown volume →
//!   `NotFound`, and so on. Messages never contain a token.
//! * `create` is idempotent for an id and resumes an interrupted creation; on an existing
//!   volume it still authenticates `token` against it (another tenant's → `PermissionDenied`).
//! * `delete` of an unknown id is `Ok`; it crypto-shreds with the driver's own credential
//!   when `token` is `None` (the CO may have no secret left: namespace deleted). The CSI
//!   layer retries with `None` when the tenant's token is refused.
//! * `stage` of an already staged volume at the same path with the same capability is `Ok`,
//!   with another capability `AlreadyExists`; `unstage` of something not staged is `Ok`.
//! * `publish` at the same target with the same arguments is `Ok`, with other arguments
//!   `AlreadyExists`; a single-writer volume already published at another target is
//!   `FailedPrecondition`. `unpublish` removes the target path and is `Ok` when not published.
//! * `stats` of a path the volume is not staged or published at is `NotFound`.

use crate::caps::VolumeCap;
use crate::errors::Result;
use crate::params::VolumeParams;
use std::collections::HashMap;
use std::path::PathBuf;
use strongroom_volume::{FsType, ProtectionMode, SecretString};

/// What the driver knows of a volume (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRecord {
    pub id: String,
    /// The tenant (PVC namespace) recorded at creation.
    pub tenant: String,
    /// Usable bytes (the LUKS2 header is allocated on top).
    pub capacity: u64,
    pub protection: ProtectionMode,
    pub fs_type: FsType,
    /// KMS catalog entry used at creation, if any.
    pub kms_id: Option<String>,
    /// False while a creation is unfinished (a retried CreateVolume resumes it).
    pub ready: bool,
    /// Nodes the volume is staged on (ListVolumes' published_node_ids).
    pub published_nodes: Vec<String>,
    /// Where its RBD image is (an RBD-backed volume): passed to nodes in the volume context.
    pub rbd: Option<RbdLocation>,
    /// What it was made from (a restore or a clone).
    pub source: Option<ContentSource>,
}

/// What a new volume is a copy of (CSI `volume_content_source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentSource {
    Snapshot(String),
    Volume(String),
}

impl ContentSource {
    /// The snapshot's or volume's id.
    pub fn id(&self) -> &str {
        match self {
            ContentSource::Snapshot(s) | ContentSource::Volume(s) => s,
        }
    }
}

/// A new snapshot, validated.
#[derive(Debug, Clone)]
pub struct SnapshotSpec {
    /// The snapshot id (derived from the CO's name, as volume ids are).
    pub id: String,
    /// The CO's name for it.
    pub name: String,
    /// The volume it is taken of.
    pub source: String,
}

/// What the driver knows of a snapshot (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub id: String,
    pub source: String,
    /// Usable bytes of the source when taken (a restore is at least this big).
    pub size: u64,
    /// Unix seconds.
    pub created_at: u64,
    pub tenant: String,
}

/// An RBD image as ceph-csi's volume context names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbdLocation {
    /// The Ceph cluster map's entry (the node looks its monitors up).
    pub cluster_id: String,
    pub pool: String,
    pub namespace: String,
    pub image: String,
}

/// A new volume, validated.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    /// The volume id (derived from the CO's name, see `controller::volume_id_for_name`).
    pub id: String,
    /// The CO's name for the volume (`pvc-<uid>`).
    pub name: String,
    /// Usable bytes requested (the header goes on top).
    pub capacity: u64,
    pub params: VolumeParams,
    /// Filesystem made on first mount-mode stage.
    pub fs_type: FsType,
    /// A restore (snapshot) or clone (volume) source.
    pub source: Option<ContentSource>,
    /// The Ceph user whose key came with the request (`userID`), for an RBD volume.
    pub ceph_user: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StageSpec {
    pub id: String,
    pub staging_path: PathBuf,
    pub cap: VolumeCap,
    pub volume_context: HashMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct PublishSpec {
    pub id: String,
    pub staging_path: PathBuf,
    pub target_path: PathBuf,
    pub cap: VolumeCap,
    pub readonly: bool,
    pub volume_context: HashMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub total: u64,
    pub used: u64,
    pub available: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeStats {
    pub bytes: Usage,
    /// `None` for block volumes.
    pub inodes: Option<Usage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub available: u64,
    pub max_volume_size: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpandResult {
    pub capacity: u64,
    pub node_expansion_required: bool,
}

pub trait VolumeBackend: Send + Sync + 'static {
    /// Ready to serve (e.g. the KMS answered); `Err` means unhealthy.
    fn probe(&self) -> Result<bool> {
        Ok(true)
    }
    fn create(&self, spec: &CreateSpec, token: &SecretString) -> Result<VolumeRecord>;
    fn get(&self, id: &str) -> Result<Option<VolumeRecord>>;
    /// All volumes, sorted by id.
    fn list(&self) -> Result<Vec<VolumeRecord>>;
    fn delete(&self, id: &str, token: Option<&SecretString>) -> Result<()>;
    fn capacity(&self) -> Result<Capacity>;
    /// Grow to at least `new_capacity` usable bytes (no-op when already that big).
    fn expand(
        &self,
        id: &str,
        new_capacity: u64,
        token: Option<&SecretString>,
    ) -> Result<ExpandResult>;
    /// Whether snapshots and clones can be made (CREATE_DELETE_SNAPSHOT, LIST_SNAPSHOTS and
    /// CLONE_VOLUME are advertised only then).
    fn supports_snapshots(&self) -> bool {
        false
    }
    /// Take a snapshot (idempotent for an id; another source → `AlreadyExists`).
    fn create_snapshot(
        &self,
        _spec: &SnapshotSpec,
        _token: &SecretString,
    ) -> Result<SnapshotRecord> {
        Err(crate::errors::CsiError::Unimplemented(
            "snapshots are not supported by this backend".into(),
        ))
    }
    fn get_snapshot(&self, _id: &str) -> Result<Option<SnapshotRecord>> {
        Ok(None)
    }
    /// All snapshots, sorted by id.
    fn list_snapshots(&self) -> Result<Vec<SnapshotRecord>> {
        Ok(vec![])
    }
    /// Shred and remove a snapshot; an unknown id is `Ok` (as `delete`).
    fn delete_snapshot(&self, _id: &str, _token: Option<&SecretString>) -> Result<()> {
        Ok(())
    }
    /// Make a volume that another node created known here, from what the CO passes to
    /// NodeStage: the volume context naming its RBD image, and the Ceph user whose key came
    /// with the request. `Ok(false)` when the volume is known already or the context names
    /// no image (then the volume is simply unknown).
    fn adopt(
        &self,
        _id: &str,
        _context: &HashMap<String, String>,
        _ceph_user: Option<&str>,
    ) -> Result<bool> {
        Ok(false)
    }
    /// Make a volume or snapshot known here from its store when its id says where it is and
    /// this process has no record of it (a controller whose state is new or lost), with the
    /// Ceph user whose key came with the request. `Ok` when it is known already, its id says
    /// nothing, or nothing is there; `Unauthenticated` when finding it needs a user and the
    /// request carried none.
    fn recover(&self, _id: &str, _ceph_user: Option<&str>) -> Result<()> {
        Ok(())
    }
    fn stage(&self, spec: &StageSpec, token: &SecretString) -> Result<()>;
    fn unstage(&self, id: &str, staging_path: &std::path::Path) -> Result<()>;
    fn publish(&self, spec: &PublishSpec) -> Result<()>;
    fn unpublish(&self, id: &str, target_path: &std::path::Path) -> Result<()>;
    fn stats(&self, id: &str, path: &std::path::Path) -> Result<VolumeStats>;
    /// Grow the opened mapping and the filesystem at `path`; returns the usable capacity.
    fn expand_node(
        &self,
        id: &str,
        path: &std::path::Path,
        new_capacity: Option<u64>,
        token: Option<&SecretString>,
    ) -> Result<u64>;
}
