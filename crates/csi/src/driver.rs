//! The state shared by the three services: configuration, the backend and the lock table.

use crate::backend::VolumeBackend;
use crate::errors::{CsiError, Result};
use crate::locks::{VolumeGuard, VolumeLocks};
use crate::params::{ClusterMap, KmsCatalog, SecretFiles};
use std::sync::Arc;
use std::time::Duration;

/// The name the driver registers under (GetPluginInfo, CSIDriver object, StorageClass
/// `provisioner`).
pub const DRIVER_NAME: &str = "strongroom.csi.k8s.io";
/// The CSI spec version `proto/csi.proto` follows.
pub const CSI_SPEC_VERSION: &str = "1.12.0";
/// Capacity of a volume whose request names none.
pub const DEFAULT_CAPACITY: u64 = 1 << 30;

/// Which services this process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Controller,
    Node,
    All,
}

impl Mode {
    pub fn controller(self) -> bool {
        matches!(self, Mode::Controller | Mode::All)
    }
    pub fn node(self) -> bool {
        matches!(self, Mode::Node | Mode::All)
    }
}

impl std::str::FromStr for Mode {
    type Err = CsiError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "controller" => Ok(Mode::Controller),
            "node" => Ok(Mode::Node),
            "all" => Ok(Mode::All),
            _ => Err(CsiError::Invalid(format!(
                "mode {s:?}: controller, node or all"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DriverConfig {
    pub node_id: String,
    pub mode: Mode,
    /// NodeGetInfo's max_volumes_per_node (0: no limit).
    pub max_volumes_per_node: i64,
    pub catalog: KmsCatalog,
    pub secret_files: SecretFiles,
    /// How long a call waits for a busy volume before ABORTED.
    pub lock_patience: Duration,
    pub default_capacity: u64,
    /// ceph-csi's cluster map (clusterID → monitors) for RBD-backed volumes.
    pub ceph_clusters: ClusterMap,
}

impl DriverConfig {
    pub fn new(node_id: impl Into<String>, mode: Mode) -> Self {
        DriverConfig {
            node_id: node_id.into(),
            mode,
            max_volumes_per_node: 0,
            catalog: KmsCatalog::default(),
            secret_files: SecretFiles {
                dir: "/etc/strongroom/kms-secrets".into(),
            },
            lock_patience: Duration::from_secs(2),
            default_capacity: DEFAULT_CAPACITY,
            ceph_clusters: ClusterMap::default(),
        }
    }
}

#[derive(Clone)]
pub struct Driver {
    pub(crate) cfg: Arc<DriverConfig>,
    pub(crate) backend: Arc<dyn VolumeBackend>,
    pub(crate) locks: VolumeLocks,
}

impl Driver {
    pub fn new(cfg: DriverConfig, backend: Arc<dyn VolumeBackend>) -> Self {
        let locks = VolumeLocks::new(cfg.lock_patience);
        Driver {
            cfg: Arc::new(cfg),
            backend,
            locks,
        }
    }

    pub fn config(&self) -> &DriverConfig {
        &self.cfg
    }

    /// Run `f` on a blocking thread while holding `guard` (the lock is kept until the work
    /// finishes even if the caller goes away: no second operation starts underneath it).
    pub(crate) async fn blocking<T, F>(&self, guard: Option<VolumeGuard>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn VolumeBackend) -> Result<T> + Send + 'static,
    {
        let backend = self.backend.clone();
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            f(backend.as_ref())
        })
        .await
        .map_err(|e| {
            CsiError::Internal(format!("volume operation panicked or was cancelled: {e}"))
        })?
    }

    pub(crate) async fn lock(&self, id: &str) -> Result<VolumeGuard> {
        self.locks.acquire(id).await
    }

    /// Whether the volume exists. Checked after the request's required fields and before
    /// the form of its paths: csi-sanity sends an unknown volume with a relative path
    /// (`some/path`) and expects NOT_FOUND.
    pub(crate) async fn exists(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.blocking(None, move |b| b.get(&id).map(|r| r.is_some()))
            .await
    }

    /// NOT_FOUND unless the volume exists (see [`Self::exists`]).
    pub(crate) async fn require_volume(&self, id: &str) -> Result<()> {
        if self.exists(id).await? {
            Ok(())
        } else {
            Err(CsiError::NotFound(format!("volume {id} does not exist")))
        }
    }
}

/// A required string field.
pub(crate) fn required<'a>(field: &str, v: &'a str) -> Result<&'a str> {
    if v.is_empty() {
        Err(CsiError::missing(field))
    } else {
        Ok(v)
    }
}

/// A required volume id (at most 128 bytes, the CSI string limit).
pub(crate) fn volume_id(v: &str) -> Result<String> {
    let v = required("volume_id", v)?;
    if v.len() > crate::controller::MAX_ID_LEN {
        return Err(CsiError::Invalid(format!(
            "volume_id is longer than {} bytes",
            crate::controller::MAX_ID_LEN
        )));
    }
    Ok(v.to_owned())
}

/// The form of a path field (staging and target paths): absolute, no NUL.
pub(crate) fn absolute_path(field: &str, v: &str) -> Result<std::path::PathBuf> {
    if !v.starts_with('/') || v.contains('\0') {
        return Err(CsiError::Invalid(format!(
            "{field} must be an absolute path"
        )));
    }
    Ok(std::path::PathBuf::from(v))
}
