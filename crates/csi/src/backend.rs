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
