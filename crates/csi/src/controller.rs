//! The Controller service: create (idempotent by name), delete (crypto-shred, works without
//! secrets), expand, validate, list (paginated), capacity, capabilities.
//!
//! Publish/unpublish are not offered (`attachRequired: false`: the node opens the volume),
//! nor snapshots, clones, GetVolume or ModifyVolume: those answer UNIMPLEMENTED.

use crate::backend::{CreateSpec, VolumeRecord};
use crate::caps::{self, Access};
use crate::driver::{required, volume_id, Driver};
use crate::errors::{CsiError, Result};
use crate::params::VolumeParams;
use crate::pb::controller_service_capability::{self, rpc};
use crate::pb::*;
use crate::rbd_id::{RbdId, RbdKind};
use crate::secrets::{ceph_user, optional_token, require_token};
use sha2::Digest;
use std::collections::HashMap;
use strongroom_volume::FsType;
use tonic::{Request, Response, Status};

/// LUKS2 sectors are 4 KiB: usable sizes are multiples of it.
pub const SECTOR: u64 = 4096;
/// The CSI limit on string fields (names, ids).
pub const MAX_ID_LEN: usize = 128;

/// Volume-context keys (non-secret, immutable; NodeStage sees them).
pub mod context {
    pub const TENANT: &str = "strongroom.io/tenant";
    pub const PROTECTION: &str = "strongroom.io/protection";
    pub const KMS_ID: &str = "strongroom.io/kms-id";
    /// ceph-csi's keys naming an RBD volume's image (NodeStage on any node imports it).
    pub const CLUSTER_ID: &str = "clusterID";
    pub const POOL: &str = "pool";
    pub const RADOS_NAMESPACE: &str = "radosNamespace";
    pub const IMAGE_NAME: &str = "imageName";
}

pub struct ControllerService {
    driver: Driver,
}

impl ControllerService {
    pub fn new(driver: Driver) -> Self {
        ControllerService { driver }
    }
}

/// The volume id of a CO name: the name itself when it is a valid manager id (external-
/// provisioner's `pvc-<uid>`), otherwise `sr-` and a hash of it (the spec allows any Unicode
/// name). Deterministic, so a retried CreateVolume finds its volume.
pub fn volume_id_for_name(name: &str) -> String {
    let plain = name.len() <= MAX_ID_LEN
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain {
        name.to_owned()
    } else {
        let h = sha2::Sha256::digest(name.as_bytes());
        format!("sr-{}", hex::encode(&h[..20]))
    }
}

/// A new volume's id: an RBD volume's says where its image is ([`RbdId`]), so that any
/// controller finds it; any other volume's is [`volume_id_for_name`].
fn new_volume_id(params: &VolumeParams, name: &str) -> Result<String> {
    let Some(p) = &params.rbd else {
        return Ok(volume_id_for_name(name));
    };
    let id = RbdId::for_name(RbdKind::Volume, &p.cluster_id, &p.pool, &p.namespace, name)
        .ok_or_else(|| {
            CsiError::invalid(
                "clusterID, pool and radosNamespace may hold only letters, digits, '-', '_' \
                 and '.' (they are part of the volume id)",
            )
        })?
        .encode();
    if id.len() > MAX_ID_LEN {
        return Err(CsiError::invalid(format!(
            "clusterID, pool and radosNamespace are too long together: the volume id would \
             be {} bytes, more than {MAX_ID_LEN}",
            id.len()
        )));
    }
    Ok(id)
}

/// The usable size for a capacity range: `required` rounded up to a sector, else the
/// default clamped under `limit`.
pub fn capacity_for(range: Option<&CapacityRange>, default: u64) -> Result<u64> {
    let (req, lim) = range.map_or((0, 0), |r| (r.required_bytes, r.limit_bytes));
    if req < 0 || lim < 0 {
        return Err(CsiError::invalid(
            "capacity_range: sizes must not be negative",
        ));
    }
    let (req, lim) = (req as u64, lim as u64);
    if lim > 0 && req > lim {
        return Err(CsiError::invalid(format!(
            "capacity_range: required_bytes {req} exceeds limit_bytes {lim}"
        )));
    }
    let size = if req > 0 {
        req.div_ceil(SECTOR) * SECTOR
    } else if lim > 0 {
        default.min(lim / SECTOR * SECTOR)
    } else {
        default
    };
    if size == 0 || (lim > 0 && size > lim) {
        return Err(CsiError::OutOfRange(format!(
            "no size that is a multiple of {SECTOR} bytes fits the capacity range [{req}, {lim}]"
        )));
    }
    Ok(size)
}

/// The smallest usable size `mkfs` accepts for a filesystem: xfsprogs (since 5.19) refuses a
/// data device under 300 MiB ("Filesystem must be larger than 300MB"); mkfs.ext4 refuses one
/// under 128 KiB with the driver's options and makes no journal under 4 MiB.
pub fn min_fs_capacity(fs: FsType) -> u64 {
    match fs {
        FsType::Xfs => 300 << 20,
        FsType::Ext4 => 4 << 20,
    }
}

/// A mount volume's capacity raised to its filesystem's minimum (the spec lets a volume be
/// larger than `required_bytes`); OUT_OF_RANGE when `limit_bytes` forbids that. Block-only
/// volumes get no filesystem and keep their size.
pub fn fs_capacity(
    capacity: u64,
    fs: Option<FsType>,
    range: Option<&CapacityRange>,
) -> Result<u64> {
    let Some(fs) = fs else { return Ok(capacity) };
    let min = min_fs_capacity(fs);
    if capacity >= min {
        return Ok(capacity);
    }
    match range.map_or(0, |r| r.limit_bytes) {
        lim if lim > 0 && (lim as u64) < min => Err(CsiError::OutOfRange(format!(
            "limit_bytes {lim} is below the smallest {} filesystem ({min} bytes)",
            fs.as_str()
        ))),
        _ => Ok(min),
    }
}

/// GetCapacity's `minimum_volume_size`: the smallest `limit_bytes` a CreateVolume with these
/// capabilities and parameters accepts (a block-only volume: one sector).
fn minimum_volume_size(caps: &[caps::VolumeCap], params: &HashMap<String, String>) -> Result<u64> {
    if caps.iter().all(|c| c.access == Access::Block) {
        return Ok(SECTOR);
    }
    let key = crate::params::sc::FS_TYPE;
    let from_params = match params.get(key).filter(|v| !v.is_empty()) {
        Some(v) => Some(crate::params::fs_type(key, v)?),
        None => None,
    };
    let fs = caps::requested_fs_type(caps)?.or(from_params);
    Ok(min_fs_capacity(fs.unwrap_or(FsType::Ext4)))
}

fn fits(range: Option<&CapacityRange>, capacity: u64) -> bool {
    let Some(r) = range else { return true };
    let req_ok = r.required_bytes <= 0 || capacity >= r.required_bytes as u64;
    let lim_ok = r.limit_bytes <= 0 || capacity <= r.limit_bytes as u64;
    req_ok && lim_ok
}

fn volume_context(rec: &VolumeRecord) -> HashMap<String, String> {
    let mut m = HashMap::from([
        (context::TENANT.to_owned(), rec.tenant.clone()),
        (context::PROTECTION.to_owned(), rec.protection.to_string()),
    ]);
    if let Some(id) = &rec.kms_id {
        m.insert(context::KMS_ID.to_owned(), id.clone());
    }
    if let Some(r) = &rec.rbd {
        m.insert(context::CLUSTER_ID.to_owned(), r.cluster_id.clone());
        m.insert(context::POOL.to_owned(), r.pool.clone());
        m.insert(context::IMAGE_NAME.to_owned(), r.image.clone());
        if !r.namespace.is_empty() {
            m.insert(context::RADOS_NAMESPACE.to_owned(), r.namespace.clone());
        }
    }
    m
}

fn to_volume(rec: &VolumeRecord) -> Volume {
    Volume {
        capacity_bytes: rec.capacity as i64,
        volume_id: rec.id.clone(),
        volume_context: volume_context(rec),
        content_source: rec.source.as_ref().map(crate::snapshots::to_pb_source),
        accessible_topology: vec![],
    }
}

/// Why an existing volume does not match a CreateVolume request (ALREADY_EXISTS), if it
/// does not.
fn incompatibility(
    rec: &VolumeRecord,
    spec: &CreateSpec,
    range: Option<&CapacityRange>,
) -> Option<String> {
    if rec.tenant != spec.params.tenant {
        return Some("it belongs to another namespace".into());
    }
    if !fits(range, rec.capacity) {
        return Some(format!(
            "its capacity {} is outside the requested range",
            rec.capacity
        ));
    }
    if rec.protection != spec.params.protection.mode() {
        return Some(format!("it uses {} protection", rec.protection));
    }
    if rec.kms_id != spec.params.kms_id {
        return Some("it uses another KMS connection".into());
    }
    if rec.fs_type != spec.fs_type {
        return Some(format!("its filesystem is {}", rec.fs_type.as_str()));
    }
    if rec.source != spec.source {
        return Some("it was made from another source".into());
    }
    None
}

/// ListVolumes continuation token: the last id returned, hex-encoded and versioned, so a
/// stale or foreign token is recognised (ABORTED) and deletions between pages are harmless.
pub(crate) fn encode_token(last_id: &str) -> String {
    format!("sr1.{}", hex::encode(last_id))
}

pub(crate) fn decode_token(t: &str) -> Result<String> {
    t.strip_prefix("sr1.")
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| CsiError::Aborted(format!("starting_token {t:?} is not a token of ours")))
}

impl ControllerService {
    /// UNIMPLEMENTED unless the backend makes snapshots.
    fn snapshots_offered(&self, what: &str) -> Result<(), Status> {
        if self.driver.backend.supports_snapshots() {
            Ok(())
        } else {
            Err(unimplemented(what))
        }
    }
}

fn unimplemented(what: &str) -> Status {
    CsiError::Unimplemented(format!("{what} is not supported by this driver")).into()
}

fn rpc_cap(t: rpc::Type) -> ControllerServiceCapability {
    ControllerServiceCapability {
        r#type: Some(controller_service_capability::Type::Rpc(
            controller_service_capability::Rpc { r#type: t as i32 },
        )),
    }
}

/// The controller capabilities we advertise (and [`SNAPSHOT_CAPABILITIES`] when the
/// backend makes snapshots).
pub const CAPABILITIES: &[rpc::Type] = &[
    rpc::Type::CreateDeleteVolume,
    rpc::Type::ListVolumes,
    rpc::Type::GetCapacity,
    rpc::Type::ExpandVolume,
    rpc::Type::SingleNodeMultiWriter,
];

pub const SNAPSHOT_CAPABILITIES: &[rpc::Type] = &[
    rpc::Type::CreateDeleteSnapshot,
    rpc::Type::ListSnapshots,
    rpc::Type::CloneVolume,
];

/// The request fields a CreateVolume must not carry (features the driver does not offer).
fn refuse_unsupported(req: &CreateVolumeRequest, snapshots: bool) -> Result<()> {
    if req.volume_content_source.is_some() && !snapshots {
        return Err(CsiError::invalid(
            "volume_content_source: snapshots and clones are not supported",
        ));
    }
    if !req.mutable_parameters.is_empty() {
        return Err(CsiError::invalid(
            "mutable_parameters: volume attribute classes are not supported",
        ));
    }
    Ok(())
}

/// The filesystem: the capability's and the StorageClass's `fsType` must agree; ext4 when
/// neither names one.
fn fs_type_for(caps: &[caps::VolumeCap], params: &VolumeParams) -> Result<FsType> {
    match (caps::requested_fs_type(caps)?, params.fs_type) {
        (Some(a), Some(b)) if a != b => Err(CsiError::invalid(format!(
            "parameter \"fsType\" is {b} but the volume capability asks for {a}"
        ))),
        (Some(a), _) => Ok(a),
        (None, Some(b)) => Ok(b),
        (None, None) => Ok(FsType::Ext4),
    }
}

/// Create, or find and check, the volume of `spec` (on the backend's blocking thread).
fn create_or_match(
    b: &dyn crate::backend::VolumeBackend,
    spec: &CreateSpec,
    range: Option<&CapacityRange>,
    token: &strongroom_volume::SecretString,
) -> Result<VolumeRecord> {
    let user = spec.ceph_user.as_deref();
    b.recover(&spec.id, user)?;
    if let Some(src) = &spec.source {
        b.recover(src.id(), user)?;
    }
    let mut spec = spec.clone();
    if let Some(src) = &spec.source {
        let size = crate::snapshots::source_size(b, src)?;
        spec.capacity = crate::snapshots::copy_capacity(range, spec.capacity, size)?;
    }
    let spec = &spec;
    if let Some(rec) = b.get(&spec.id)? {
        if let Some(why) = incompatibility(&rec, spec, range) {
            return Err(CsiError::AlreadyExists(format!(
                "volume {} exists and is incompatible with this request: {why}",
                spec.id
            )));
        }
        // Still call create: it resumes an unfinished creation and, for a finished one,
        // proves the caller's token opens this volume (PERMISSION_DENIED for another
        // tenant's) before the volume is handed back.
    } else if let Some(max) = b.capacity()?.max_volume_size {
        if spec.capacity > max {
            return Err(CsiError::OutOfRange(format!(
                "{} bytes exceeds the largest volume this driver can create ({max} bytes)",
                spec.capacity
            )));
        }
    }
    b.create(spec, token)
}

impl ControllerService {
    async fn create(&self, req: CreateVolumeRequest) -> Result<CreateVolumeResponse> {
        let name = required("name", &req.name)?;
        if name.len() > MAX_ID_LEN {
            return Err(CsiError::invalid(format!(
                "name is longer than {MAX_ID_LEN} bytes"
            )));
        }
        let caps = caps::parse_all(&req.volume_capabilities).map_err(|e| e.into_csi(false))?;
        refuse_unsupported(&req, self.driver.backend.supports_snapshots())?;
        let source = crate::snapshots::content_source(req.volume_content_source.as_ref())?;
        let cfg = &self.driver.cfg;
        let params = VolumeParams::parse(
            &req.parameters,
            &cfg.catalog,
            &cfg.secret_files,
            &cfg.ceph_clusters,
        )?;
        let token = require_token(&req.secrets, "CreateVolume")?;
        let ceph_user = ceph_user(&req.secrets)?;
        if params.rbd.is_some() && ceph_user.is_none() {
            return Err(CsiError::Unauthenticated(
                "an RBD volume needs the Ceph user: the provisioner secret must carry userID \
                 and userKey"
                    .into(),
            ));
        }
        let fs_type = fs_type_for(&caps, &params)?;
        let block_only = caps.iter().all(|c| c.access == Access::Block);
        let range = req.capacity_range;
        let capacity = capacity_for(range.as_ref(), cfg.default_capacity)?;
        let spec = CreateSpec {
            source,
            ceph_user,
            id: new_volume_id(&params, name)?,
            name: name.to_owned(),
            capacity: fs_capacity(capacity, (!block_only).then_some(fs_type), range.as_ref())?,
            fs_type,
            params,
        };
        tracing::info!(volume = %spec.id, tenant = %spec.params.tenant, capacity = spec.capacity, protection = %spec.params.protection.mode(), block_only, "CreateVolume");
        let guard = self.driver.lock(&spec.id).await?;
        let rec = self
            .driver
            .blocking(Some(guard), move |b| {
                create_or_match(b, &spec, range.as_ref(), &token)
            })
            .await?;
        Ok(CreateVolumeResponse {
            volume: Some(to_volume(&rec)),
        })
    }

    /// Deletion never depends on the tenant's credential: the CO deletes a PV on the
    /// cluster's authority, and the tenant's Secret may be gone, blank or revoked. A usable
    /// token is offered to the backend first (the shred is then audited as the tenant); if
    /// it is missing or refused, the backend shreds with the driver's own credential.
    async fn delete(&self, req: DeleteVolumeRequest) -> Result<()> {
        let id = volume_id(&req.volume_id)?;
        let token = optional_token(&req.secrets).ok().flatten();
        // The Ceph key, if any, for removing an RBD image: needed only to find one this
        // controller has no record of.
        let user = ceph_user(&req.secrets).ok().flatten();
        tracing::info!(volume = %id, with_tenant_token = token.is_some(), "DeleteVolume");
        let guard = self.driver.lock(&id).await?;
        self.driver
            .blocking(Some(guard), move |b| {
                b.recover(&id, user.as_deref())?;
                let r = match b.delete(&id, token.as_ref()) {
                    Err(CsiError::Unauthenticated(_) | CsiError::PermissionDenied(_))
                        if token.is_some() =>
                    {
                        tracing::warn!(volume = %id, "tenant token refused; shredding with the driver's credential");
                        b.delete(&id, None)
                    }
                    r => r,
                };
                match r {
                    Err(CsiError::NotFound(_)) => Ok(()),
                    r => r,
                }
            })
            .await
    }

    async fn expand(
        &self,
        req: ControllerExpandVolumeRequest,
    ) -> Result<ControllerExpandVolumeResponse> {
        let id = volume_id(&req.volume_id)?;
        let range = req
            .capacity_range
            .ok_or_else(|| CsiError::missing("capacity_range"))?;
        if range.required_bytes <= 0 && range.limit_bytes <= 0 {
            return Err(CsiError::invalid(
                "capacity_range: required_bytes or limit_bytes must be set",
            ));
        }
        if let Some(c) = &req.volume_capability {
            caps::parse(c).map_err(|e| e.into_csi(false))?;
        }
        let token = optional_token(&req.secrets)?;
        let user = ceph_user(&req.secrets)?;
        let size = capacity_for(Some(&range), 0)?;
        tracing::info!(volume = %id, capacity = size, "ControllerExpandVolume");
        let guard = self.driver.lock(&id).await?;
        let r = self
            .driver
            .blocking(Some(guard), move |b| {
                b.recover(&id, user.as_deref())?;
                let rec = b
                    .get(&id)?
                    .ok_or_else(|| CsiError::NotFound(format!("volume {id}")))?;
                if range.limit_bytes > 0 && rec.capacity > range.limit_bytes as u64 {
                    return Err(CsiError::OutOfRange(format!(
                        "the volume already has {} bytes, more than limit_bytes; volumes do not shrink",
                        rec.capacity
                    )));
                }
                if rec.capacity >= size {
                    return Ok(crate::backend::ExpandResult {
                        capacity: rec.capacity,
                        node_expansion_required: false,
                    });
                }
                if let Some(max) = b.capacity()?.max_volume_size {
                    if size > max {
                        return Err(CsiError::OutOfRange(format!(
                            "{size} bytes exceeds the largest volume ({max} bytes)"
                        )));
                    }
                }
                b.expand(&id, size, token.as_ref())
            })
            .await?;
        Ok(ControllerExpandVolumeResponse {
            capacity_bytes: r.capacity as i64,
            node_expansion_required: r.node_expansion_required,
        })
    }

    async fn validate(
        &self,
        req: ValidateVolumeCapabilitiesRequest,
    ) -> Result<ValidateVolumeCapabilitiesResponse> {
        let id = volume_id(&req.volume_id)?;
        if req.volume_capabilities.is_empty() {
            return Err(CsiError::missing("volume_capabilities"));
        }
        let user = ceph_user(&req.secrets)?;
        let rec = self
            .driver
            .blocking(None, move |b| {
                b.recover(&id, user.as_deref())?;
                b.get(&id)
            })
            .await?
            .ok_or_else(|| CsiError::NotFound(format!("volume {}", req.volume_id)))?;
        let verdict =
            caps::parse_all(&req.volume_capabilities).and_then(|cs| match caps::requested_fs_type(
                &cs,
            ) {
                Ok(Some(t)) if t != rec.fs_type => Err(caps::CapError::Unsupported(format!(
                    "the volume's filesystem is {}",
                    rec.fs_type.as_str()
                ))),
                Ok(_) => Ok(()),
                Err(e) => Err(caps::CapError::Unsupported(e.to_string())),
            });
        Ok(match verdict {
            Ok(()) => ValidateVolumeCapabilitiesResponse {
                confirmed: Some(validate_volume_capabilities_response::Confirmed {
                    volume_context: req.volume_context,
                    volume_capabilities: req.volume_capabilities,
                    parameters: req.parameters,
                    mutable_parameters: req.mutable_parameters,
                }),
                message: String::new(),
            },
            Err(e) => ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: e.message().to_owned(),
            },
        })
    }

    async fn list(&self, req: ListVolumesRequest) -> Result<ListVolumesResponse> {
        if req.max_entries < 0 {
            return Err(CsiError::invalid("max_entries must not be negative"));
        }
        let after = if req.starting_token.is_empty() {
            None
        } else {
            Some(decode_token(&req.starting_token)?)
        };
        let mut all = self.driver.blocking(None, |b| b.list()).await?;
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let rest: Vec<VolumeRecord> = all
            .into_iter()
            .filter(|r| after.as_ref().is_none_or(|a| r.id.as_str() > a.as_str()))
            .collect();
        let max = if req.max_entries == 0 {
            usize::MAX
        } else {
            req.max_entries as usize
        };
        let page: Vec<&VolumeRecord> = rest.iter().take(max).collect();
        let next_token = if rest.len() > page.len() {
            page.last().map(|r| encode_token(&r.id)).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(ListVolumesResponse {
            entries: page
                .into_iter()
                .map(|r| list_volumes_response::Entry {
                    volume: Some(to_volume(r)),
                    status: None,
                })
                .collect(),
            next_token,
        })
    }

    async fn capacity(&self, req: GetCapacityRequest) -> Result<GetCapacityResponse> {
        // Capabilities we cannot serve have no capacity (the spec's answer is 0, not an error).
        let parsed = match caps::parse_all(&req.volume_capabilities) {
            Ok(p) => Some(p),
            Err(_) if req.volume_capabilities.is_empty() => None,
            Err(_) => return Ok(GetCapacityResponse::default()),
        };
        let minimum = match parsed.map(|p| minimum_volume_size(&p, &req.parameters)) {
            Some(Ok(m)) => Some(m),
            Some(Err(_)) => return Ok(GetCapacityResponse::default()),
            None => None,
        };
        let c = self.driver.blocking(None, |b| b.capacity()).await?;
        Ok(GetCapacityResponse {
            available_capacity: c.available.min(i64::MAX as u64) as i64,
            maximum_volume_size: c.max_volume_size.map(|m| m.min(i64::MAX as u64) as i64),
            minimum_volume_size: minimum.map(|m| m as i64),
        })
    }
}

#[tonic::async_trait]
impl controller_server::Controller for ControllerService {
    async fn create_volume(
        &self,
        req: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        Ok(Response::new(self.create(req.into_inner()).await?))
    }

    async fn delete_volume(
        &self,
        req: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        self.delete(req.into_inner()).await?;
        Ok(Response::new(DeleteVolumeResponse {}))
    }

    async fn controller_publish_volume(
        &self,
        _req: Request<ControllerPublishVolumeRequest>,
    ) -> Result<Response<ControllerPublishVolumeResponse>, Status> {
        Err(unimplemented(
            "ControllerPublishVolume (attachRequired: false)",
        ))
    }

    async fn controller_unpublish_volume(
        &self,
        _req: Request<ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        Err(unimplemented(
            "ControllerUnpublishVolume (attachRequired: false)",
        ))
    }

    async fn validate_volume_capabilities(
        &self,
        req: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        Ok(Response::new(self.validate(req.into_inner()).await?))
    }

    async fn list_volumes(
        &self,
        req: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        Ok(Response::new(self.list(req.into_inner()).await?))
    }

    async fn get_capacity(
        &self,
        req: Request<GetCapacityRequest>,
    ) -> Result<Response<GetCapacityResponse>, Status> {
        Ok(Response::new(self.capacity(req.into_inner()).await?))
    }

    async fn controller_get_capabilities(
        &self,
        _req: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        let snapshots = self.driver.backend.supports_snapshots();
        let extra = if snapshots {
            SNAPSHOT_CAPABILITIES
        } else {
            &[]
        };
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities: CAPABILITIES
                .iter()
                .chain(extra)
                .map(|t| rpc_cap(*t))
                .collect(),
        }))
    }

    async fn create_snapshot(
        &self,
        req: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        self.snapshots_offered("CreateSnapshot")?;
        let r = crate::snapshots::create(&self.driver, req.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn delete_snapshot(
        &self,
        req: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        self.snapshots_offered("DeleteSnapshot")?;
        crate::snapshots::delete(&self.driver, req.into_inner()).await?;
        Ok(Response::new(DeleteSnapshotResponse {}))
    }

    async fn list_snapshots(
        &self,
        req: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        self.snapshots_offered("ListSnapshots")?;
        let r = crate::snapshots::list(&self.driver, req.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn get_snapshot(
        &self,
        _req: Request<GetSnapshotRequest>,
    ) -> Result<Response<GetSnapshotResponse>, Status> {
        Err(unimplemented("GetSnapshot"))
    }

    async fn controller_expand_volume(
        &self,
        req: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        Ok(Response::new(self.expand(req.into_inner()).await?))
    }

    async fn controller_get_volume(
        &self,
        _req: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        Err(unimplemented("ControllerGetVolume"))
    }

    async fn controller_modify_volume(
        &self,
        _req: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        Err(unimplemented("ControllerModifyVolume"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(r: i64, l: i64) -> CapacityRange {
        CapacityRange {
            required_bytes: r,
            limit_bytes: l,
        }
    }

    #[test]
    fn ids_from_names() {
        assert_eq!(
            volume_id_for_name("pvc-91948955-afb6-481e-a013-bd7ee628169a"),
            "pvc-91948955-afb6-481e-a013-bd7ee628169a"
        );
        let long = "a".repeat(128);
        assert_eq!(volume_id_for_name(&long), long);
        let odd = volume_id_for_name("my volume/ü");
        assert!(odd.starts_with("sr-") && odd.len() == 43, "{odd}");
        assert_eq!(odd, volume_id_for_name("my volume/ü"));
        assert_ne!(odd, volume_id_for_name("my volume/u"));
        assert!(volume_id_for_name(".hidden").starts_with("sr-"));
    }

    #[test]
    fn capacities() {
        const G: i64 = 1 << 30;
        assert_eq!(capacity_for(None, 1 << 30).unwrap(), 1 << 30);
        assert_eq!(capacity_for(Some(&range(G, G)), 0).unwrap(), G as u64);
        assert_eq!(capacity_for(Some(&range(1, 0)), 0).unwrap(), 4096);
        assert_eq!(capacity_for(Some(&range(0, 8192)), 1 << 30).unwrap(), 8192);
        assert!(matches!(
            capacity_for(Some(&range(-1, 0)), 0),
            Err(CsiError::Invalid(_))
        ));
        assert!(matches!(
            capacity_for(Some(&range(10, 5)), 0),
            Err(CsiError::Invalid(_))
        ));
        assert!(matches!(
            capacity_for(Some(&range(5000, 6000)), 0),
            Err(CsiError::OutOfRange(_))
        ));
        assert!(matches!(
            capacity_for(Some(&range(0, 100)), 1 << 30),
            Err(CsiError::OutOfRange(_))
        ));
        assert!(fits(Some(&range(G, 0)), G as u64));
        assert!(!fits(Some(&range(2 * G, 0)), G as u64));
        assert!(!fits(Some(&range(0, G - 1)), G as u64));
    }

    #[test]
    fn mount_volumes_are_at_least_their_filesystems_minimum() {
        const M: u64 = 1 << 20;
        let xfs = Some(FsType::Xfs);
        assert_eq!(fs_capacity(64 * M, xfs, None).unwrap(), 300 * M);
        assert_eq!(fs_capacity(400 * M, xfs, None).unwrap(), 400 * M);
        assert_eq!(
            fs_capacity(64 * M, xfs, Some(&range(64 << 20, 0))).unwrap(),
            300 * M
        );
        assert!(matches!(
            fs_capacity(64 * M, xfs, Some(&range(64 << 20, 64 << 20))),
            Err(CsiError::OutOfRange(_))
        ));
        assert_eq!(fs_capacity(4096, Some(FsType::Ext4), None).unwrap(), 4 * M);
        assert_eq!(fs_capacity(4096, None, None).unwrap(), 4096, "block only");
    }

    #[test]
    fn list_tokens_round_trip_and_reject_foreign_ones() {
        assert_eq!(decode_token(&encode_token("pvc-1")).unwrap(), "pvc-1");
        for bad in ["invalid-token", "sr1.zz", "sr2.00"] {
            assert!(
                matches!(decode_token(bad), Err(CsiError::Aborted(_))),
                "{bad}"
            );
        }
    }
}
