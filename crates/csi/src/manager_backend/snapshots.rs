//! Snapshots, restores and clones of RBD-backed volumes (as ceph-csi makes them: a snapshot
//! is an image `csi-snap-<uuid>` cloned from the volume's, so that it outlives the volume).
//!
//! All three are the volume manager's [`Manager::create_clone`]: the new image is a
//! copy-on-write clone whose header gets its own keyslot secret, protected under its own id
//! (a snapshot's: the source volume's protection; a restored or cloned volume's: its
//! StorageClass's). A snapshot is a manager volume the CO never stages; its CSI record says
//! which volume it was taken of. A source of another tenant is PERMISSION_DENIED.

use super::{csi, rbd, write_json, CsiRecord, ManagerBackend, CSI_RECORD};
use crate::backend::{ContentSource, CreateSpec, SnapshotRecord, SnapshotSpec};
use crate::errors::{CsiError, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use strongroom_volume::{
    new_image_name, CreateRequest, Manager, SecretString, State, StoreSpec, VolumeInfo,
};

/// [`ContentSource`] as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceRec {
    Snapshot(String),
    Volume(String),
}

impl SourceRec {
    pub fn content(&self) -> ContentSource {
        match self {
            SourceRec::Snapshot(s) => ContentSource::Snapshot(s.clone()),
            SourceRec::Volume(v) => ContentSource::Volume(v.clone()),
        }
    }
}

impl From<&ContentSource> for SourceRec {
    fn from(c: &ContentSource) -> Self {
        match c {
            ContentSource::Snapshot(s) => SourceRec::Snapshot(s.clone()),
            ContentSource::Volume(v) => SourceRec::Volume(v.clone()),
        }
    }
}

/// A snapshot image's name: `csi-snap-<uuid>`, as ceph-csi names them (the one its id
/// names, for ids that name one).
fn snap_image_name(id: &str) -> String {
    rbd::image_for(id, || new_image_name().replacen("csi-vol-", "csi-snap-", 1))
}

/// The RBD record of snapshot `id` of a volume recorded as `v`: the volume's pool,
/// namespace, connection and layout, the snapshot's own image.
fn snapshot_rbd(id: &str, v: &rbd::RbdRecord) -> Result<rbd::RbdRecord> {
    let StoreSpec::Rbd {
        pool,
        namespace,
        ceph,
        layout,
        ..
    } = &v.store
    else {
        return Err(CsiError::Internal(
            "an RBD record without an RBD store".into(),
        ));
    };
    Ok(rbd::RbdRecord {
        cluster_id: v.cluster_id.clone(),
        store: StoreSpec::Rbd {
            pool: pool.clone(),
            namespace: namespace.clone(),
            image: snap_image_name(id),
            ceph: ceph.clone(),
            layout: layout.clone(),
        },
    })
}

impl ManagerBackend {
    /// CreateSnapshot: see the module's text.
    pub(super) fn snapshot(
        &self,
        spec: &SnapshotSpec,
        token: &SecretString,
    ) -> Result<SnapshotRecord> {
        let (vrec, mgr, info) = self.require(&spec.source)?;
        let rec = self.snapshot_record(spec, &vrec)?;
        let store = rec.rbd.as_ref().map(|r| r.store.clone());
        let req = CreateRequest {
            id: spec.id.clone(),
            tenant: info.tenant.clone(),
            size: info.size,
            protection: mgr.protection_request(&spec.source).map_err(csi)?,
            store,
            fs_type: vrec.fs_type,
        };
        let made = mgr.create_clone(&req, &spec.source, &Self::tenant(token));
        let i = self.or_forget(&spec.id, made)?;
        rbd::publish_record(&rec)?;
        Ok(snapshot_of(&spec.source, &i))
    }

    /// The snapshot's CSI record: found (it must be of the same volume), or made.
    fn snapshot_record(&self, spec: &SnapshotSpec, vrec: &CsiRecord) -> Result<CsiRecord> {
        if let Some(r) = self.record(&spec.id)? {
            return match r.snapshot_of.as_deref() {
                Some(v) if v == spec.source => Ok(r),
                Some(v) => Err(CsiError::AlreadyExists(format!(
                    "snapshot {} exists, of volume {v}",
                    spec.name
                ))),
                None => Err(CsiError::AlreadyExists(format!(
                    "{} is the id of a volume",
                    spec.id
                ))),
            };
        }
        let v = vrec.rbd.as_ref().ok_or_else(|| {
            CsiError::FailedPrecondition(format!(
                "volume {} is not an RBD volume: snapshots are made of RBD volumes",
                spec.source
            ))
        })?;
        let rec = CsiRecord {
            name: spec.name.clone(),
            rbd: Some(snapshot_rbd(&spec.id, v)?),
            snapshot_of: Some(spec.source.clone()),
            source: None,
            ..vrec.clone()
        };
        let dir = self.dir(&spec.id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| CsiError::Internal(format!("create {}: {e}", dir.display())))?;
        write_json(&dir.join(CSI_RECORD), &rec)?;
        Ok(rec)
    }

    /// A copy refused before the KMS stored anything leaves nothing behind (the CO never
    /// learns of it); any other failure is left for a retry to finish.
    fn or_forget(&self, id: &str, r: strongroom_volume::Result<VolumeInfo>) -> Result<VolumeInfo> {
        let r = r.map_err(csi);
        if let Err(e) = &r {
            let refused = matches!(
                e,
                CsiError::Unauthenticated(_) | CsiError::PermissionDenied(_) | CsiError::Invalid(_)
            );
            if refused && self.never_protected(id) {
                let _ = std::fs::remove_dir_all(self.dir(id));
            }
        }
        r
    }

    /// A restored or cloned volume: `rec` (already recorded) made from `src`.
    pub(super) fn create_copy(
        &self,
        mgr: &Arc<Manager>,
        spec: &CreateSpec,
        rec: &CsiRecord,
        src: &ContentSource,
        token: &SecretString,
    ) -> Result<VolumeInfo> {
        let (src_id, src_rec) = self.source_of(src)?;
        if src_rec.pvc_namespace != spec.params.tenant {
            return Err(CsiError::PermissionDenied(format!(
                "{src_id} belongs to another namespace: it cannot be copied into {}",
                spec.params.tenant
            )));
        }
        let (Some(r), Some(sr)) = (&rec.rbd, &src_rec.rbd) else {
            return Err(CsiError::Invalid(
                "restores and clones are RBD volumes: the StorageClass must name a pool".into(),
            ));
        };
        if r.cluster_id != sr.cluster_id || src_rec.kms != rec.kms {
            return Err(CsiError::Invalid(format!(
                "{src_id} is in another Ceph cluster or uses another KMS connection"
            )));
        }
        let req = CreateRequest {
            id: spec.id.clone(),
            tenant: spec.params.tenant.clone(),
            size: spec.capacity,
            protection: spec.params.protection.clone(),
            store: Some(r.store.clone()),
            fs_type: rec.fs_type,
        };
        mgr.create_clone(&req, &src_id, &Self::tenant(token))
            .map_err(csi)
    }

    /// The volume a content source names (a snapshot's own volume, or the volume itself).
    fn source_of(&self, src: &ContentSource) -> Result<(String, CsiRecord)> {
        let (id, want_snapshot) = match src {
            ContentSource::Snapshot(s) => (s, true),
            ContentSource::Volume(v) => (v, false),
        };
        match self.record(id)? {
            Some(r) if r.snapshot_of.is_some() == want_snapshot => Ok((id.clone(), r)),
            _ => Err(CsiError::NotFound(format!(
                "{} {id} does not exist",
                if want_snapshot { "snapshot" } else { "volume" }
            ))),
        }
    }

    /// A finished snapshot; `None` for anything else.
    pub(super) fn open_snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>> {
        let Some(rec) = self.record(id)? else {
            return Ok(None);
        };
        let Some(source) = &rec.snapshot_of else {
            return Ok(None);
        };
        match self.manager(&rec.kms)?.status(id) {
            Ok(i) if i.state == State::Formatted => Ok(Some(snapshot_of(source, &i))),
            Ok(_) | Err(strongroom_volume::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(csi(e)),
        }
    }

    pub(super) fn snapshots(&self) -> Result<Vec<SnapshotRecord>> {
        let rd = std::fs::read_dir(&self.cfg.root)
            .map_err(|e| CsiError::Internal(format!("list snapshots: {e}")))?;
        let mut out: Vec<SnapshotRecord> = rd
            .flatten()
            .filter_map(|e| {
                self.open_snapshot(&e.file_name().to_string_lossy())
                    .ok()
                    .flatten()
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

fn snapshot_of(source: &str, i: &VolumeInfo) -> SnapshotRecord {
    SnapshotRecord {
        id: i.id.clone(),
        source: source.to_owned(),
        size: i.size,
        created_at: i.created_at,
        tenant: i.tenant.clone(),
    }
}
