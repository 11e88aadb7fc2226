//! RBD-backed volumes: the controller makes the image (`csi-vol-<uuid>` in the StorageClass's
//! pool and RADOS namespace) and keeps the CSI record in the image's metadata beside the
//! volume manager's; NodeStage on any node adopts the volume from the image named by the
//! volume context. A node keeps only its attach state: an adopted volume's local copy is
//! dropped at NodeUnstage (Ceph has the truth).

use super::{csi, write_json, CsiRecord, ManagerBackend, NodeState, CSI_RECORD};
use crate::backend::{CreateSpec, RbdLocation};
use crate::controller::context;
use crate::errors::{CsiError, Result};
use crate::rbd_id::RbdId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use strongroom_volume::{new_image_name, CephRef, ImageLayout, MsMode, RbdStore, StoreSpec};

/// The image metadata key holding the [`CsiRecord`] (JSON).
pub const CSI_ATTR: &str = "strongroom.csi";

/// Where an RBD-backed volume is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RbdRecord {
    /// The cluster map entry (nodes look the monitors up in their own map).
    pub cluster_id: String,
    pub store: StoreSpec,
}

impl RbdRecord {
    pub fn location(&self) -> Option<RbdLocation> {
        match &self.store {
            StoreSpec::Rbd {
                pool,
                namespace,
                image,
                ..
            } => Some(RbdLocation {
                cluster_id: self.cluster_id.clone(),
                pool: pool.clone(),
                namespace: namespace.clone(),
                image: image.clone(),
            }),
            _ => None,
        }
    }
}

fn store_spec(
    pool: &str,
    namespace: &str,
    image: &str,
    user: &str,
    monitors: &str,
    layout: ImageLayout,
    ms_mode: Option<MsMode>,
) -> StoreSpec {
    StoreSpec::Rbd {
        pool: pool.to_owned(),
        namespace: namespace.to_owned(),
        image: image.to_owned(),
        ceph: CephRef {
            conf: None,
            user: user.to_owned(),
            monitors: Some(monitors.to_owned()),
            ms_mode,
        },
        layout,
    }
}

/// The new volume's image (a fresh `csi-vol-<uuid>` name), for a CreateVolume with RBD
/// parameters; `None` for a file-backed one.
pub fn record_for(spec: &CreateSpec) -> Result<Option<RbdRecord>> {
    let Some(p) = &spec.params.rbd else {
        return Ok(None);
    };
    let user = spec.ceph_user.as_deref().ok_or_else(|| {
        CsiError::Unauthenticated("an RBD volume needs userID and userKey in the secret".into())
    })?;
    Ok(Some(RbdRecord {
        cluster_id: p.cluster_id.clone(),
        store: store_spec(
            &p.pool,
            &p.namespace,
            &image_for(&spec.id, new_image_name),
            user,
            &p.monitors,
            p.layout.clone(),
            p.ms_mode,
        ),
    }))
}

/// The image an id names (see [`RbdId`]), else `fallback()` (ids made before ids said
/// where their image is).
pub fn image_for(id: &str, fallback: impl FnOnce() -> String) -> String {
    RbdId::parse(id).map_or_else(fallback, |r| r.image_name())
}

fn rbd_store(spec: &StoreSpec) -> Result<RbdStore> {
    RbdStore::of(spec).ok_or_else(|| CsiError::Internal("not an RBD store".into()))
}

/// Keep the CSI record in the image, for the nodes that adopt it (idempotent).
pub fn publish_record(rec: &CsiRecord) -> Result<()> {
    let Some(r) = &rec.rbd else {
        return Ok(());
    };
    let json = serde_json::to_string(rec).map_err(|e| CsiError::Internal(e.to_string()))?;
    rbd_store(&r.store)?.put_attr(CSI_ATTR, &json).map_err(csi)
}

/// The image a volume context names (ceph-csi's keys), if it names one.
fn location(ctx: &HashMap<String, String>) -> Result<Option<RbdLocation>> {
    let Some(image) = ctx.get(context::IMAGE_NAME) else {
        return Ok(None);
    };
    let need = |k: &str| {
        ctx.get(k).cloned().ok_or_else(|| {
            CsiError::Invalid(format!("volume_context: {k:?} is required with imageName"))
        })
    };
    Ok(Some(RbdLocation {
        cluster_id: need(context::CLUSTER_ID)?,
        pool: need(context::POOL)?,
        namespace: ctx
            .get(context::RADOS_NAMESPACE)
            .cloned()
            .unwrap_or_default(),
        image: image.clone(),
    }))
}

impl ManagerBackend {
    /// See [`crate::VolumeBackend::adopt`]; a context naming no image falls back to the
    /// location the id carries.
    pub(super) fn adopt_rbd(
        &self,
        id: &str,
        ctx: &HashMap<String, String>,
        user: Option<&str>,
    ) -> Result<bool> {
        if self.record(id)?.is_some() || !super::valid_id(id) {
            return Ok(false);
        }
        let Some(loc) = location(ctx)?.or_else(|| RbdId::parse(id).map(|r| r.location())) else {
            return Ok(false);
        };
        let user = user.ok_or_else(|| {
            CsiError::Unauthenticated(
                "NodeStage of an RBD volume needs userID and userKey in the node-stage secret"
                    .into(),
            )
        })?;
        let rec = self.import_rbd(id, &loc, user)?;
        let st = NodeState {
            adopted: true,
            ..NodeState::default()
        };
        self.save_node_state(id, &st)?;
        // Last: the record is what makes the volume known here.
        write_json(&self.dir(id).join(CSI_RECORD), &rec)?;
        tracing::info!(volume = %id, image = %loc.image, "adopted an RBD volume from Ceph");
        Ok(true)
    }

    /// See [`crate::VolumeBackend::recover`].
    pub(super) fn recover_rbd(&self, id: &str, user: Option<&str>) -> Result<()> {
        let Some(rid) = RbdId::parse(id) else {
            return Ok(());
        };
        if self.record(id)?.is_some() {
            return Ok(());
        }
        let user = user.ok_or_else(|| {
            CsiError::Unauthenticated(format!(
                "{id} is an RBD volume or snapshot this driver has no record of: the request's \
                 secret must carry userID and userKey to find it in Ceph"
            ))
        })?;
        let loc = rid.location();
        match self.import_rbd(id, &loc, user) {
            Ok(rec) => {
                write_json(&self.dir(id).join(CSI_RECORD), &rec)?;
                tracing::info!(volume = %id, image = %loc.image, "found a volume in Ceph from its id");
                Ok(())
            }
            // No such image (never made, or removed): the id is simply unknown.
            Err(CsiError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The manager imports the volume whose CSI record the image at `loc` holds; returns that
    /// record (for the caller to write last).
    fn import_rbd(&self, id: &str, loc: &RbdLocation, user: &str) -> Result<CsiRecord> {
        let cluster = self.cfg.ceph_clusters.get(&loc.cluster_id).ok_or_else(|| {
            CsiError::FailedPrecondition(format!(
                "clusterID {:?} is not in this driver's Ceph cluster map",
                loc.cluster_id
            ))
        })?;
        let probe = store_spec(
            &loc.pool,
            &loc.namespace,
            &loc.image,
            user,
            &cluster.monitors,
            ImageLayout::default(),
            None,
        );
        let text = rbd_store(&probe)?
            .get_attr(CSI_ATTR)
            .map_err(csi)?
            .ok_or_else(|| {
                CsiError::NotFound(format!("image {} holds no Strongroom volume", loc.image))
            })?;
        let rec: CsiRecord = serde_json::from_str(&text)
            .map_err(|e| CsiError::Internal(format!("the image's CSI record is corrupt: {e}")))?;
        self.manager(&rec.kms)?.import(id, &probe).map_err(csi)?;
        Ok(rec)
    }

    /// After NodeUnstage: forget an adopted volume's local copy (Ceph keeps the truth).
    pub(super) fn forget_adopted(&self, id: &str) -> Result<()> {
        std::fs::remove_dir_all(self.dir(id))
            .map_err(|e| CsiError::Internal(format!("forget volume {id}: {e}")))
    }
}
