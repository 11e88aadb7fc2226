//! The production [`VolumeBackend`]: the CSI services over `strongroom_volume::Manager`.
//!
//! * One [`Manager`] per KMS connection (address and TLS settings), created on first use and
//!   shared by every volume created through that connection. All managers share the volumes
//!   root, so ids are unique across connections.
//! * Beside the manager's own metadata, each volume directory holds `csi.json`: the CO's name,
//!   the KMS connection the volume was created with (no credential) and the PVC names. The
//!   node side opens a volume through the connection recorded there, so a StorageClass or
//!   catalog edit never sends an existing volume's key requests elsewhere.
//! * Node-side state (`csi-node.json`: staging path, access type, publish targets) records
//!   what this node did, and is checked against the mount table, never trusted alone.
//!
//! Credentials: the tenant's token for create, stage and expand; deletion falls back to the
//! driver's admin token (`--admin-token-file`), NodeUnstage/NodeUnpublish need none.

use crate::backend::*;
use crate::caps::{Access, VolumeCap};
use crate::errors::{CsiError, Result};
use crate::mounts;
use crate::params::{ClusterMap, KmsConnection};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strongroom_volume::{
    CreateRequest, Credential, DataPathKind, Error as VError, ErrorKind, FsType, HolderLauncher,
    KmsConfig, Manager, ManagerConfig, SecretString, State, VolumeInfo,
};

mod rbd;
mod snapshots;

const CSI_RECORD: &str = "csi.json";
const NODE_STATE: &str = "csi-node.json";

/// The non-secret part of a KMS connection, as recorded with a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsRef {
    pub address: String,
    /// The other nodes of a key-manager cluster (absent from records made before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_addresses: Vec<String>,
    pub tls_server_name: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub skip_verify: bool,
}

impl From<&KmsConnection> for KmsRef {
    fn from(c: &KmsConnection) -> Self {
        KmsRef {
            address: c.addresses.first().cloned().unwrap_or_default(),
            more_addresses: c.addresses.iter().skip(1).cloned().collect(),
            tls_server_name: c.tls_server_name.clone(),
            ca_cert: c.ca_cert.clone(),
            client_cert: c.client_cert.clone(),
            skip_verify: c.skip_verify,
        }
    }
}

impl KmsRef {
    fn key(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.address.clone())
    }

    fn addresses(&self) -> Vec<String> {
        std::iter::once(&self.address)
            .chain(&self.more_addresses)
            .cloned()
            .collect()
    }

    fn config(&self, timeout: Duration) -> Result<KmsConfig> {
        if let Some(name) = &self.tls_server_name {
            for address in self.addresses() {
                check_server_name(&address, name)?;
            }
        }
        let mut k = KmsConfig::with_addresses(self.addresses());
        k.ca_cert = self.ca_cert.clone();
        k.client_cert = self.client_cert.clone();
        k.skip_verify = self.skip_verify;
        k.timeout = timeout;
        Ok(k)
    }
}

/// A TLS server name must be the host the address names (the certificate is checked
/// against the host).
fn check_server_name(address: &str, name: &str) -> Result<()> {
    let host = address
        .split("://")
        .nth(1)
        .unwrap_or("")
        .split(':')
        .next()
        .unwrap_or("");
    if host != name {
        return Err(CsiError::Invalid(format!(
            "TLS server name {name:?} differs from the KMS address host {host:?}: \
             address the key manager by the name on its certificate"
        )));
    }
    Ok(())
}

/// `csi.json`: what the controller recorded at creation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CsiRecord {
    name: String,
    kms_id: Option<String>,
    kms: KmsRef,
    fs_type: FsType,
    pvc_namespace: String,
    pvc_name: Option<String>,
    pv_name: Option<String>,
    /// The RBD image of an RBD-backed volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rbd: Option<rbd::RbdRecord>,
    /// Set on a snapshot: the volume it was taken of (a snapshot is a volume of the manager
    /// that the CO never stages: an RBD clone with its own keyslot secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    snapshot_of: Option<String>,
    /// What a volume was made from (restore or clone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<snapshots::SourceRec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum AccessKind {
    Block,
    Mount,
}

fn access_kind(c: &VolumeCap) -> AccessKind {
    match c.access {
        Access::Block => AccessKind::Block,
        Access::Mount { .. } => AccessKind::Mount,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct PublishRec {
    readonly: bool,
    kind: AccessKind,
}

/// `csi-node.json`: what this node did with the volume.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct NodeState {
    staging: Option<PathBuf>,
    kind: Option<AccessKind>,
    /// Mount flags the volume was staged with (compared on a repeated stage).
    mount_flags: Vec<String>,
    published: BTreeMap<PathBuf, PublishRec>,
    /// Adopted from Ceph at NodeStage (another node created it): forgotten at NodeUnstage.
    #[serde(default)]
    adopted: bool,
}

/// How to build the backend.
#[derive(Debug, Clone)]
pub struct ManagerBackendConfig {
    /// Volumes root (the manager's `<root>/<id>/`).
    pub root: PathBuf,
    /// Bound into every wrapped secret's context.
    pub cluster_id: String,
    /// This node (ListVolumes' published_node_ids).
    pub node_id: String,
    /// Crypto-shreds when DeleteVolume has no usable tenant token.
    pub admin_token: Option<SecretString>,
    /// Checked by Probe (`sys/health`), when set.
    pub probe_kms: Option<KmsConnection>,
    /// Unwrapped keys stay cached this long (zeroized on eviction).
    pub cache_ttl: Duration,
    pub kms_timeout: Duration,
    /// The largest volume CreateVolume accepts (`None`: what the filesystem has room for).
    pub max_volume_size: Option<u64>,
    /// Volume holders serve the userspace data path, so that staged volumes outlive a
    /// restart of this process (`None`: served by threads of this process).
    pub holder: Option<HolderLauncher>,
    /// ceph-csi's cluster map: the monitors of the cluster an RBD volume context names.
    pub ceph_clusters: ClusterMap,
}

pub struct ManagerBackend {
    cfg: ManagerBackendConfig,
    managers: Mutex<HashMap<String, Arc<Manager>>>,
}

/// The manager's error classes are the driver's (both mirror the CSI codes).
fn csi(e: VError) -> CsiError {
    match e {
        VError::Unavailable(m) => CsiError::Unavailable(m),
        VError::Unauthenticated(m) => CsiError::Unauthenticated(m),
        VError::PermissionDenied(m) => CsiError::PermissionDenied(m),
        VError::NotFound(m) => CsiError::NotFound(m),
        VError::InvalidArgument(m) => CsiError::Invalid(m),
        VError::FailedPrecondition(m) => CsiError::FailedPrecondition(m),
        // I/O errors class by their cause (a store locked by another client, a timeout)
        other => match other.kind() {
            ErrorKind::FailedPrecondition => CsiError::FailedPrecondition(other.to_string()),
            ErrorKind::Unavailable => CsiError::Unavailable(other.to_string()),
            _ => CsiError::Internal(other.to_string()),
        },
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(p: &Path) -> Result<Option<T>> {
    match std::fs::read(p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| CsiError::Internal(format!("{} is corrupt: {e}", p.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CsiError::Internal(format!("read {}: {e}", p.display()))),
    }
}

/// Write-then-rename, fsynced: a crash leaves the old or the new record.
fn write_json<T: Serialize>(p: &Path, v: &T) -> Result<()> {
    use std::io::Write;
    let io = |e: std::io::Error| CsiError::Internal(format!("write {}: {e}", p.display()));
    let tmp = p.with_extension("json.tmp");
    let b = serde_json::to_vec_pretty(v).map_err(|e| CsiError::Internal(e.to_string()))?;
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&b).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, p).map_err(io)
}

impl ManagerBackend {
    pub fn new(cfg: ManagerBackendConfig) -> Result<Self> {
        std::fs::create_dir_all(&cfg.root).map_err(|e| {
            CsiError::Internal(format!("create volumes root {}: {e}", cfg.root.display()))
        })?;
        Ok(ManagerBackend {
            cfg,
            managers: Mutex::new(HashMap::new()),
        })
    }

    fn manager(&self, kms: &KmsRef) -> Result<Arc<Manager>> {
        let mut m = self.managers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(x) = m.get(&kms.key()) {
            return Ok(x.clone());
        }
        let mut mgr = Manager::new(ManagerConfig {
            root: self.cfg.root.clone(),
            cluster_id: self.cfg.cluster_id.clone(),
            kms: kms.config(self.cfg.kms_timeout)?,
            cache_ttl: self.cfg.cache_ttl,
            datapath: None,
        })
        .with_progress(|msg| tracing::info!("{msg}"));
        if let Some(h) = &self.cfg.holder {
            mgr = mgr.with_holders(h.clone());
        }
        let mgr = Arc::new(mgr);
        m.insert(kms.key(), mgr.clone());
        Ok(mgr)
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.cfg.root.join(id)
    }

    fn record(&self, id: &str) -> Result<Option<CsiRecord>> {
        if !valid_id(id) {
            return Ok(None);
        }
        read_json(&self.dir(id).join(CSI_RECORD))
    }

    /// The volume's manager and status; `None` when it does not exist (or was shredded).
    fn open(&self, id: &str) -> Result<Option<(CsiRecord, Arc<Manager>, VolumeInfo)>> {
        let Some(rec) = self.record(id)?.filter(|r| r.snapshot_of.is_none()) else {
            return Ok(None);
        };
        let mgr = self.manager(&rec.kms)?;
        match mgr.status(id) {
            Ok(info) if info.state == State::Shredded => Ok(None),
            Ok(info) => Ok(Some((rec, mgr, info))),
            Err(VError::NotFound(_)) => Ok(None),
            Err(e) => Err(csi(e)),
        }
    }

    fn require(&self, id: &str) -> Result<(CsiRecord, Arc<Manager>, VolumeInfo)> {
        self.open(id)?
            .ok_or_else(|| CsiError::NotFound(format!("volume {id} does not exist")))
    }

    fn to_record(&self, rec: &CsiRecord, info: &VolumeInfo) -> VolumeRecord {
        let open_here = info.mounted || info.device.is_some();
        VolumeRecord {
            id: info.id.clone(),
            tenant: info.tenant.clone(),
            capacity: info.size,
            protection: info.protection,
            fs_type: rec.fs_type,
            kms_id: rec.kms_id.clone(),
            ready: info.state == State::Formatted,
            published_nodes: if open_here {
                vec![self.cfg.node_id.clone()]
            } else {
                vec![]
            },
            rbd: rec.rbd.as_ref().and_then(rbd::RbdRecord::location),
            source: rec.source.as_ref().map(snapshots::SourceRec::content),
        }
    }

    fn node_state(&self, id: &str) -> Result<NodeState> {
        Ok(read_json(&self.dir(id).join(NODE_STATE))?.unwrap_or_default())
    }

    fn save_node_state(&self, id: &str, s: &NodeState) -> Result<()> {
        write_json(&self.dir(id).join(NODE_STATE), s)
    }

    /// The node state of a volume this node has staged or published at `path`;
    /// NOT_FOUND otherwise (NodeGetVolumeStats, NodeExpandVolume).
    fn node_state_at(&self, id: &str, path: &Path, info: &VolumeInfo) -> Result<NodeState> {
        let st = self.node_state(id)?;
        let known = st.staging.as_deref() == Some(path) || st.published.contains_key(path);
        if !known || !Self::staged_for_real(info, &st) {
            return Err(CsiError::NotFound(format!(
                "volume {id} is not staged or published at {}",
                path.display()
            )));
        }
        Ok(st)
    }

    fn tenant(t: &SecretString) -> Credential {
        Credential::Tenant(t.clone())
    }

    /// The access kind a publish asks for, if the volume is staged at its staging path for
    /// that kind; FAILED_PRECONDITION otherwise.
    fn check_staged_for(
        spec: &PublishSpec,
        info: &VolumeInfo,
        st: &NodeState,
    ) -> Result<AccessKind> {
        if !Self::staged_for_real(info, st)
            || st.staging.as_deref() != Some(spec.staging_path.as_path())
        {
            return Err(CsiError::FailedPrecondition(format!(
                "volume {} is not staged at {}",
                spec.id,
                spec.staging_path.display()
            )));
        }
        let kind = access_kind(&spec.cap);
        if st.kind != Some(kind) {
            return Err(CsiError::FailedPrecondition(format!(
                "volume {} is staged for {:?} access, not {:?}",
                spec.id,
                st.kind.unwrap_or(AccessKind::Mount),
                kind
            )));
        }
        Ok(kind)
    }

    /// Bind the staged filesystem (or the opened device, block mode) at the target.
    fn bind(spec: &PublishSpec, info: &VolumeInfo, kind: AccessKind) -> Result<()> {
        let (source, how) = match kind {
            AccessKind::Mount => (spec.staging_path.as_path(), mounts::Kind::Filesystem),
            AccessKind::Block => {
                let dev = info.device.as_deref().ok_or_else(|| {
                    CsiError::Internal(format!("volume {} has no device", spec.id))
                })?;
                (Path::new(dev), mounts::Kind::Block)
            }
        };
        mounts::publish(source, &spec.target_path, how, spec.readonly)
    }

    /// Whether `target` is a mount of this volume: a bind of its staging path (filesystem) or
    /// of its device (block).
    fn publishes_here(info: &VolumeInfo, st: &NodeState, target: &Path) -> Result<bool> {
        if mounts::mount_at(target)?.is_none() {
            return Ok(false);
        }
        let source = match st.kind {
            Some(AccessKind::Block) => info.device.as_deref().map(Path::new),
            _ => st.staging.as_deref(),
        };
        Ok(source.is_some_and(|s| mounts::same_file(s, target)))
    }

    /// Whether the node state's staging is real: the filesystem mounted there, or the
    /// device attached (block), as the manager sees it.
    fn staged_for_real(info: &VolumeInfo, st: &NodeState) -> bool {
        match (st.kind, &st.staging) {
            (Some(AccessKind::Mount), Some(p)) => {
                info.mounted && info.target.as_deref() == Some(p.as_path())
            }
            (Some(AccessKind::Block), Some(_)) => info.device.is_some() && info.target.is_none(),
            _ => false,
        }
    }
}

pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn mount_flags(c: &VolumeCap) -> Vec<String> {
    match &c.access {
        Access::Mount { mount_flags, .. } => mount_flags.clone(),
        Access::Block => vec![],
    }
}

impl ManagerBackend {
    /// True when the volume's metadata shows no secret was ever protected in the KMS.
    fn never_protected(&self, id: &str) -> bool {
        let Ok(Some(rec)) = self.record(id) else {
            return true;
        };
        let Ok(mgr) = self.manager(&rec.kms) else {
            return false;
        };
        match mgr.status(id) {
            Err(VError::NotFound(_)) => true,
            Ok(info) => info.state == State::Provisioning,
            Err(_) => false,
        }
    }

    fn create_inner(&self, spec: &CreateSpec, token: &SecretString) -> Result<VolumeRecord> {
        let dir = self.dir(&spec.id);
        let rec = match self.record(&spec.id)? {
            Some(r) => r,
            None => {
                let r = CsiRecord {
                    name: spec.name.clone(),
                    kms_id: spec.params.kms_id.clone(),
                    kms: KmsRef::from(&spec.params.kms),
                    fs_type: spec.fs_type,
                    pvc_namespace: spec.params.pvc.namespace.clone(),
                    pvc_name: spec.params.pvc.name.clone(),
                    pv_name: spec.params.pvc.pv_name.clone(),
                    rbd: rbd::record_for(spec)?,
                    snapshot_of: None,
                    source: spec.source.as_ref().map(snapshots::SourceRec::from),
                };
                std::fs::create_dir_all(&dir)
                    .map_err(|e| CsiError::Internal(format!("create {}: {e}", dir.display())))?;
                write_json(&dir.join(CSI_RECORD), &r)?;
                r
            }
        };
        let mgr = self.manager(&rec.kms)?;
        let req = CreateRequest {
            id: spec.id.clone(),
            tenant: spec.params.tenant.clone(),
            size: spec.capacity,
            protection: spec.params.protection.clone(),
            store: rec.rbd.as_ref().map(|r| r.store.clone()),
            fs_type: rec.fs_type,
        };
        let info = match &spec.source {
            None => mgr.create(&req, &Self::tenant(token)).map_err(csi)?,
            Some(src) => self.create_copy(&mgr, spec, &rec, src, token)?,
        };
        rbd::publish_record(&rec)?;
        Ok(self.to_record(&rec, &info))
    }
}

impl ManagerBackend {
    /// Crypto-shred a volume or snapshot, then remove its store and directory.
    fn destroy(&self, id: &str, rec: &CsiRecord, token: Option<&SecretString>) -> Result<()> {
        let mgr = self.manager(&rec.kms)?;
        let cred = match token {
            Some(t) => Self::tenant(t),
            None => match &self.cfg.admin_token {
                Some(a) => Credential::Admin(a.clone()),
                None => {
                    return Err(CsiError::FailedPrecondition(format!(
                        "volume {id}: no tenant token and no admin token configured \
                         (--admin-token-file) to crypto-shred it"
                    )))
                }
            },
        };
        match mgr.shred(id, &cred) {
            Ok(_) => {}
            // Created no further than the CSI record: nothing to shred.
            Err(VError::NotFound(_)) => {}
            Err(e) => return Err(csi(e)),
        }
        if mgr.status(id).is_ok() {
            mgr.remove_shredded(id).map_err(csi)?;
        } else {
            std::fs::remove_dir_all(self.dir(id))
                .map_err(|e| CsiError::Internal(format!("remove volume {id}: {e}")))?;
        }
        tracing::info!(volume = %id, by = if token.is_some() { "tenant" } else { "admin" }, "volume crypto-shredded and removed");
        Ok(())
    }
}

impl VolumeBackend for ManagerBackend {
    fn probe(&self) -> Result<bool> {
        let Some(conn) = &self.cfg.probe_kms else {
            return Ok(true);
        };
        let k = KmsRef::from(conn).config(Duration::from_secs(3))?;
        let client = k
            .anonymous_client()
            .map_err(|e| CsiError::Invalid(e.to_string()))?;
        // Not ready (OK, ready=false) rather than an error: a sealed or restarting key
        // manager must not make the liveness probe restart every driver on the cluster.
        match client.health() {
            Ok(h) => Ok(h.status == 200 || h.status == 429 || h.status == 473),
            Err(e) => {
                tracing::warn!("probe: the key manager does not answer: {e}");
                Ok(false)
            }
        }
    }

    fn create(&self, spec: &CreateSpec, token: &SecretString) -> Result<VolumeRecord> {
        let dir = self.dir(&spec.id);
        let existed = strongroom_volume::is_volume_dir(&dir) || self.record(&spec.id)?.is_some();
        let r = self.create_inner(spec, token);
        if let Err(e) = &r {
            // A creation refused before the KMS stored anything (bad, foreign or missing
            // token; bad parameters) must not leave a half-made volume behind: the CO never
            // learns its id, so no DeleteVolume would ever come for it.
            let refused = matches!(
                e,
                CsiError::Unauthenticated(_) | CsiError::PermissionDenied(_) | CsiError::Invalid(_)
            );
            if refused && !existed && self.never_protected(&spec.id) {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        r
    }

    fn get(&self, id: &str) -> Result<Option<VolumeRecord>> {
        Ok(self
            .open(id)?
            .map(|(rec, _, info)| self.to_record(&rec, &info)))
    }
    fn list(&self) -> Result<Vec<VolumeRecord>> {
        let rd = std::fs::read_dir(&self.cfg.root)
            .map_err(|e| CsiError::Internal(format!("list volumes: {e}")))?;
        let mut out = Vec::new();
        for e in rd.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            // A volume whose files vanish mid-listing is simply not listed.
            if let Ok(Some(r)) = self.get(&id) {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn delete(&self, id: &str, token: Option<&SecretString>) -> Result<()> {
        match self.record(id)? {
            Some(rec) if rec.snapshot_of.is_none() => self.destroy(id, &rec, token),
            _ => Err(CsiError::NotFound(format!("volume {id}"))),
        }
    }

    fn supports_snapshots(&self) -> bool {
        self.cfg.ceph_clusters.ids().next().is_some()
    }
    fn create_snapshot(&self, spec: &SnapshotSpec, token: &SecretString) -> Result<SnapshotRecord> {
        self.snapshot(spec, token)
    }
    fn get_snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>> {
        self.open_snapshot(id)
    }
    fn list_snapshots(&self) -> Result<Vec<SnapshotRecord>> {
        self.snapshots()
    }
    fn delete_snapshot(&self, id: &str, token: Option<&SecretString>) -> Result<()> {
        match self.record(id)? {
            Some(rec) if rec.snapshot_of.is_some() => self.destroy(id, &rec, token),
            _ => Ok(()),
        }
    }

    fn capacity(&self) -> Result<Capacity> {
        let s = rustix::fs::statvfs(&self.cfg.root)
            .map_err(|e| CsiError::Internal(format!("statvfs volumes root: {e}")))?;
        let available = s.f_bavail.saturating_mul(s.f_frsize.max(1));
        Ok(Capacity {
            available,
            max_volume_size: self.cfg.max_volume_size,
        })
    }

    fn expand(
        &self,
        id: &str,
        new_capacity: u64,
        token: Option<&SecretString>,
    ) -> Result<ExpandResult> {
        let (_, mgr, _) = self.require(id)?;
        let t = token.ok_or_else(|| {
            CsiError::Unauthenticated(
                "ControllerExpandVolume needs the tenant's token: set \
                 csi.storage.k8s.io/controller-expand-secret-name in the StorageClass"
                    .into(),
            )
        })?;
        let info = mgr
            .resize(id, &Self::tenant(t), new_capacity)
            .map_err(csi)?;
        Ok(ExpandResult {
            capacity: info.size,
            node_expansion_required: true,
        })
    }

    fn adopt(
        &self,
        id: &str,
        context: &HashMap<String, String>,
        ceph_user: Option<&str>,
    ) -> Result<bool> {
        self.adopt_rbd(id, context, ceph_user)
    }
    fn recover(&self, id: &str, ceph_user: Option<&str>) -> Result<()> {
        self.recover_rbd(id, ceph_user)
    }

    fn stage(&self, spec: &StageSpec, token: &SecretString) -> Result<()> {
        let (rec, mgr, info) = self.require(&spec.id)?;
        if let Access::Mount {
            fs_type: Some(f), ..
        } = &spec.cap.access
        {
            if *f != rec.fs_type {
                return Err(CsiError::Invalid(format!(
                    "volume {} has a {} filesystem, the capability asks for {f}",
                    spec.id, rec.fs_type
                )));
            }
        }
        let kind = access_kind(&spec.cap);
        let flags = mount_flags(&spec.cap);
        let mut st = self.node_state(&spec.id)?;
        if Self::staged_for_real(&info, &st) {
            let here = st.staging.as_deref() == Some(spec.staging_path.as_path());
            if !here {
                return Err(CsiError::FailedPrecondition(format!(
                    "volume {} is staged at another path on this node",
                    spec.id
                )));
            }
            if st.kind != Some(kind) || st.mount_flags != flags {
                return Err(CsiError::AlreadyExists(format!(
                    "volume {} is staged at this path with another capability",
                    spec.id
                )));
            }
        }
        let cred = Self::tenant(token);
        let opened = match kind {
            AccessKind::Mount => {
                let i = mgr
                    .mount(&spec.id, &cred, &spec.staging_path)
                    .map_err(csi)?;
                // Flags apply to the staged filesystem (and so to every bind of it).
                mounts::remount(&spec.staging_path, &flags)?;
                i
            }
            AccessKind::Block => {
                let i = mgr.attach(&spec.id, &cred).map_err(csi)?;
                std::fs::create_dir_all(&spec.staging_path).map_err(|e| {
                    CsiError::Internal(format!("create {}: {e}", spec.staging_path.display()))
                })?;
                i
            }
        };
        tracing::info!(
            volume = %spec.id,
            datapath = %opened.datapath.map_or("none", DataPathKind::as_str),
            device = opened.device.as_deref().unwrap_or("-"),
            "volume staged"
        );
        st.staging = Some(spec.staging_path.clone());
        st.kind = Some(kind);
        st.mount_flags = flags;
        self.save_node_state(&spec.id, &st)
    }

    fn unstage(&self, id: &str, staging_path: &Path) -> Result<()> {
        let Some((_, mgr, _)) = self.open(id)? else {
            return Ok(());
        };
        let mut st = self.node_state(id)?;
        if st.staging.as_deref().is_some_and(|p| p != staging_path) {
            // Staged somewhere else: nothing of ours is at this path.
            return Ok(());
        }
        // Publishes left behind (the CO unpublishes first; a crash may not have).
        for t in std::mem::take(&mut st.published).keys() {
            mounts::unpublish(t)?;
        }
        mgr.unmount(id).map_err(csi)?;
        if st.adopted {
            return self.forget_adopted(id);
        }
        st = NodeState::default();
        self.save_node_state(id, &st)
    }

    fn publish(&self, spec: &PublishSpec) -> Result<()> {
        let (_, _, info) = self.require(&spec.id)?;
        let mut st = self.node_state(&spec.id)?;
        let kind = Self::check_staged_for(spec, &info, &st)?;
        // Forget targets that are no longer mount points (unmounted behind our back).
        st.published
            .retain(|t, _| mounts::mount_at(t).ok().flatten().is_some());
        let want = PublishRec {
            readonly: spec.readonly,
            kind,
        };
        if let Some(have) = st.published.get(&spec.target_path) {
            return if *have == want {
                Ok(())
            } else {
                Err(CsiError::AlreadyExists(format!(
                    "volume {} is published at {} with other arguments",
                    spec.id,
                    spec.target_path.display()
                )))
            };
        }
        if spec.cap.mode.single_target() && !st.published.is_empty() {
            return Err(CsiError::FailedPrecondition(format!(
                "volume {} is single-writer and already published at another target",
                spec.id
            )));
        }
        Self::bind(spec, &info, kind)?;
        st.published.insert(spec.target_path.clone(), want);
        self.save_node_state(&spec.id, &st)
    }

    /// Unmounts and removes the target only if this volume is published there (recorded, or
    /// a bind of its staging path or device left by a crash before the record): whatever
    /// else is at the path was not made by us and is left alone.
    fn unpublish(&self, id: &str, target_path: &Path) -> Result<()> {
        let Some((_, _, info)) = self.open(id)? else {
            return Ok(());
        };
        let mut st = self.node_state(id)?;
        let recorded = st.published.remove(target_path).is_some();
        if recorded || Self::publishes_here(&info, &st, target_path)? {
            mounts::unpublish(target_path)?;
        }
        if recorded {
            self.save_node_state(id, &st)?;
        }
        Ok(())
    }

    fn stats(&self, id: &str, path: &Path) -> Result<VolumeStats> {
        let (_, _, info) = self.require(id)?;
        let st = self.node_state_at(id, path, &info)?;
        match st.kind {
            Some(AccessKind::Block) => {
                if st.staging.as_deref() != Some(path) && mounts::mount_at(path)?.is_none() {
                    return Err(CsiError::NotFound(format!(
                        "nothing is published at {}",
                        path.display()
                    )));
                }
                Ok(VolumeStats {
                    bytes: Usage {
                        total: info.size,
                        used: 0,
                        available: 0,
                    },
                    inodes: None,
                })
            }
            _ => mounts::stats(path),
        }
    }

    fn expand_node(
        &self,
        id: &str,
        path: &Path,
        new_capacity: Option<u64>,
        token: Option<&SecretString>,
    ) -> Result<u64> {
        let (_, mgr, info) = self.require(id)?;
        self.node_state_at(id, path, &info)?;
        let info = match (new_capacity, token) {
            // The controller grew the store short of this size (or never ran): grow it here.
            (Some(n), Some(t)) if n > info.size => {
                mgr.resize(id, &Self::tenant(t), n).map_err(csi)?
            }
            (Some(n), None) if n > info.size => {
                return Err(CsiError::FailedPrecondition(format!(
                    "volume {id} has {} bytes; ControllerExpandVolume must grow it to {n} first",
                    info.size
                )))
            }
            _ => mgr
                .grow_attached(id, token.map(Self::tenant).as_ref())
                .map_err(csi)?,
        };
        if info.fs_grow_pending {
            return Err(CsiError::FailedPrecondition(format!(
                "volume {id}: the filesystem could not be grown online; it grows at the next stage"
            )));
        }
        Ok(info.size)
    }
}

#[cfg(test)]
mod tests;
