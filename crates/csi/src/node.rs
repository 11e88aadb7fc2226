//! The Node service: stage (unlock, attach, filesystem on first use, mount at the staging
//! path), publish (bind mount or block device node, read-only honoured), unpublish, unstage
//! (no secrets needed), expand, stats, capabilities, info.
//!
//! Request validation happens here; the work is the backend's. Calls on one volume are
//! serialised by the lock table (or ABORTED after the patience).

use crate::backend::{PublishSpec, StageSpec};
use crate::caps;
use crate::driver::{absolute_path, required, volume_id, Driver};
use crate::errors::{CsiError, Result};
use crate::pb::node_service_capability::{self, rpc};
use crate::pb::*;
use crate::secrets::{ceph_user, optional_token, require_token};
use tonic::{Request, Response, Status};

pub struct NodeService {
    driver: Driver,
}

impl NodeService {
    pub fn new(driver: Driver) -> Self {
        NodeService { driver }
    }
}

/// The node capabilities we advertise.
pub const CAPABILITIES: &[rpc::Type] = &[
    rpc::Type::StageUnstageVolume,
    rpc::Type::GetVolumeStats,
    rpc::Type::ExpandVolume,
    rpc::Type::SingleNodeMultiWriter,
];

fn volume_cap(c: Option<&VolumeCapability>) -> Result<caps::VolumeCap> {
    let c = c.ok_or_else(|| CsiError::missing("volume_capability"))?;
    caps::parse(c).map_err(|e| e.into_csi(true))
}

/// Request checks run in one order everywhere: required fields, capability and token first;
/// then whether the volume exists (NOT_FOUND); only then the form of the paths. An unknown
/// volume is NOT_FOUND whatever its paths look like (csi-sanity sends `some/path`), and
/// unstaging or unpublishing one touches nothing.
impl NodeService {
    async fn stage(&self, req: NodeStageVolumeRequest) -> Result<()> {
        let id = volume_id(&req.volume_id)?;
        let staging = required("staging_target_path", &req.staging_target_path)?;
        let cap = volume_cap(req.volume_capability.as_ref())?;
        let token = require_token(&req.secrets, "NodeStageVolume")?;
        let ceph_user = ceph_user(&req.secrets)?;
        let guard = self.driver.lock(&id).await?;
        let (i, ctx) = (id.clone(), req.volume_context.clone());
        self.driver
            .blocking(None, move |b| b.adopt(&i, &ctx, ceph_user.as_deref()))
            .await?;
        self.driver.require_volume(&id).await?;
        let staging_path = absolute_path("staging_target_path", staging)?;
        tracing::info!(volume = %id, staging = %staging_path.display(), "NodeStageVolume");
        let spec = StageSpec {
            id,
            staging_path,
            cap,
            volume_context: req.volume_context,
        };
        self.driver
            .blocking(Some(guard), move |b| b.stage(&spec, &token))
            .await
    }

    async fn unstage(&self, req: NodeUnstageVolumeRequest) -> Result<()> {
        let id = volume_id(&req.volume_id)?;
        let staging = required("staging_target_path", &req.staging_target_path)?;
        if !self.driver.exists(&id).await? {
            return Ok(()); // nothing of an unknown volume is staged here
        }
        let staging = absolute_path("staging_target_path", staging)?;
        tracing::info!(volume = %id, staging = %staging.display(), "NodeUnstageVolume");
        let guard = self.driver.lock(&id).await?;
        self.driver
            .blocking(Some(guard), move |b| match b.unstage(&id, &staging) {
                Err(CsiError::NotFound(_)) => Ok(()),
                r => r,
            })
            .await
    }

    async fn publish(&self, req: NodePublishVolumeRequest) -> Result<()> {
        let id = volume_id(&req.volume_id)?;
        let target = required("target_path", &req.target_path)?;
        let cap = volume_cap(req.volume_capability.as_ref())?;
        if req.staging_target_path.is_empty() {
            return Err(CsiError::FailedPrecondition(
                "staging_target_path is required: this driver stages volumes (STAGE_UNSTAGE_VOLUME)"
                    .into(),
            ));
        }
        self.driver.require_volume(&id).await?;
        let target_path = absolute_path("target_path", target)?;
        let staging_path = absolute_path("staging_target_path", &req.staging_target_path)?;
        let readonly = req.readonly || cap.mode.read_only();
        tracing::info!(volume = %id, target = %target_path.display(), readonly, "NodePublishVolume");
        let spec = PublishSpec {
            id,
            staging_path,
            target_path,
            cap,
            readonly,
            volume_context: req.volume_context,
        };
        let guard = self.driver.lock(&spec.id).await?;
        self.driver
            .blocking(Some(guard), move |b| b.publish(&spec))
            .await
    }

    async fn unpublish(&self, req: NodeUnpublishVolumeRequest) -> Result<()> {
        let id = volume_id(&req.volume_id)?;
        let target = required("target_path", &req.target_path)?;
        if !self.driver.exists(&id).await? {
            // Whatever is at the target is not ours: leave it alone.
            return Ok(());
        }
        let target = absolute_path("target_path", target)?;
        tracing::info!(volume = %id, target = %target.display(), "NodeUnpublishVolume");
        let guard = self.driver.lock(&id).await?;
        self.driver
            .blocking(Some(guard), move |b| match b.unpublish(&id, &target) {
                Err(CsiError::NotFound(_)) => Ok(()),
                r => r,
            })
            .await
    }

    async fn stats(&self, req: NodeGetVolumeStatsRequest) -> Result<NodeGetVolumeStatsResponse> {
        let id = volume_id(&req.volume_id)?;
        let path = std::path::PathBuf::from(required("volume_path", &req.volume_path)?);
        let s = self
            .driver
            .blocking(None, move |b| b.stats(&id, &path))
            .await?;
        let usage = |u: crate::backend::Usage, unit: volume_usage::Unit| VolumeUsage {
            available: u.available.min(i64::MAX as u64) as i64,
            total: u.total.min(i64::MAX as u64) as i64,
            used: u.used.min(i64::MAX as u64) as i64,
            unit: unit as i32,
        };
        let mut out = vec![usage(s.bytes, volume_usage::Unit::Bytes)];
        if let Some(i) = s.inodes {
            out.push(usage(i, volume_usage::Unit::Inodes));
        }
        Ok(NodeGetVolumeStatsResponse {
            usage: out,
            volume_condition: None,
        })
    }

    async fn expand(&self, req: NodeExpandVolumeRequest) -> Result<NodeExpandVolumeResponse> {
        let id = volume_id(&req.volume_id)?;
        let path = required("volume_path", &req.volume_path)?;
        if let Some(c) = &req.volume_capability {
            caps::parse(c).map_err(|e| e.into_csi(false))?;
        }
        let size = match &req.capacity_range {
            Some(r) if r.required_bytes > 0 || r.limit_bytes > 0 => {
                Some(crate::controller::capacity_for(Some(r), 0)?)
            }
            _ => None,
        };
        let token = optional_token(&req.secrets)?;
        ceph_user(&req.secrets)?;
        self.driver.require_volume(&id).await?;
        let path = absolute_path("volume_path", path)?;
        tracing::info!(volume = %id, path = %path.display(), ?size, "NodeExpandVolume");
        let guard = self.driver.lock(&id).await?;
        let capacity = self
            .driver
            .blocking(Some(guard), move |b| {
                b.expand_node(&id, &path, size, token.as_ref())
            })
            .await?;
        Ok(NodeExpandVolumeResponse {
            capacity_bytes: capacity.min(i64::MAX as u64) as i64,
        })
    }
}

#[tonic::async_trait]
impl node_server::Node for NodeService {
    async fn node_stage_volume(
        &self,
        req: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        self.stage(req.into_inner()).await?;
        Ok(Response::new(NodeStageVolumeResponse {}))
    }

    async fn node_unstage_volume(
        &self,
        req: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        self.unstage(req.into_inner()).await?;
        Ok(Response::new(NodeUnstageVolumeResponse {}))
    }

    async fn node_publish_volume(
        &self,
        req: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        self.publish(req.into_inner()).await?;
        Ok(Response::new(NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        req: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        self.unpublish(req.into_inner()).await?;
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        req: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        Ok(Response::new(self.stats(req.into_inner()).await?))
    }

    async fn node_expand_volume(
        &self,
        req: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        Ok(Response::new(self.expand(req.into_inner()).await?))
    }

    async fn node_get_capabilities(
        &self,
        _req: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        Ok(Response::new(NodeGetCapabilitiesResponse {
            capabilities: CAPABILITIES
                .iter()
                .map(|t| NodeServiceCapability {
                    r#type: Some(node_service_capability::Type::Rpc(
                        node_service_capability::Rpc { r#type: *t as i32 },
                    )),
                })
                .collect(),
        }))
    }

    async fn node_get_info(
        &self,
        _req: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.driver.cfg.node_id.clone(),
            max_volumes_per_node: self.driver.cfg.max_volumes_per_node,
            accessible_topology: None,
        }))
    }
}
