//! The Controller's snapshot RPCs (CreateSnapshot, DeleteSnapshot, ListSnapshots) and the
//! content source of CreateVolume (restore from a snapshot, clone of a volume). Offered only
//! when the backend makes snapshots (RBD: see `manager_backend::snapshots`).

use crate::backend::{ContentSource, SnapshotRecord, SnapshotSpec, VolumeBackend};
use crate::controller::{decode_token, encode_token, volume_id_for_name, MAX_ID_LEN};
use crate::driver::{required, Driver};
use crate::errors::{CsiError, Result};
use crate::pb::volume_content_source::{SnapshotSource, Type, VolumeSource};
use crate::pb::*;
use crate::rbd_id::RbdId;
use crate::secrets::{ceph_user, optional_token, require_token};

pub fn to_pb_source(c: &ContentSource) -> VolumeContentSource {
    VolumeContentSource {
        r#type: Some(match c {
            ContentSource::Snapshot(s) => Type::Snapshot(SnapshotSource {
                snapshot_id: s.clone(),
            }),
            ContentSource::Volume(v) => Type::Volume(VolumeSource {
                volume_id: v.clone(),
            }),
        }),
    }
}

/// CreateVolume's `volume_content_source`, checked.
pub fn content_source(c: Option<&VolumeContentSource>) -> Result<Option<ContentSource>> {
    let Some(c) = c else { return Ok(None) };
    match &c.r#type {
        Some(Type::Snapshot(s)) => Ok(Some(ContentSource::Snapshot(
            required("volume_content_source.snapshot.snapshot_id", &s.snapshot_id)?.to_owned(),
        ))),
        Some(Type::Volume(v)) => Ok(Some(ContentSource::Volume(
            required("volume_content_source.volume.volume_id", &v.volume_id)?.to_owned(),
        ))),
        None => Err(CsiError::missing("volume_content_source.type")),
    }
}

/// The usable size of a content source; NOT_FOUND when it does not exist.
pub fn source_size(b: &dyn VolumeBackend, src: &ContentSource) -> Result<u64> {
    match src {
        ContentSource::Snapshot(s) => b
            .get_snapshot(s)?
            .map(|r| r.size)
            .ok_or_else(|| CsiError::NotFound(format!("snapshot {s} does not exist"))),
        ContentSource::Volume(v) => b
            .get(v)?
            .map(|r| r.capacity)
            .ok_or_else(|| CsiError::NotFound(format!("volume {v} does not exist"))),
    }
}

/// The size of a copy: the source's unless the range asks for more; a range that excludes
/// the source's size is OUT_OF_RANGE (volumes do not shrink).
pub fn copy_capacity(range: Option<&CapacityRange>, asked: u64, source: u64) -> Result<u64> {
    let (req, lim) = range.map_or((0, 0), |r| (r.required_bytes, r.limit_bytes));
    if lim > 0 && (lim as u64) < source {
        return Err(CsiError::OutOfRange(format!(
            "limit_bytes {lim} is less than the source's {source} bytes"
        )));
    }
    Ok(if req > 0 { asked.max(source) } else { source })
}

fn to_pb(r: &SnapshotRecord) -> Snapshot {
    Snapshot {
        size_bytes: r.size.min(i64::MAX as u64) as i64,
        snapshot_id: r.id.clone(),
        source_volume_id: r.source.clone(),
        creation_time: Some(prost_types::Timestamp {
            seconds: r.created_at.min(i64::MAX as u64) as i64,
            nanos: 0,
        }),
        ready_to_use: true,
        group_snapshot_id: String::new(),
    }
}

pub async fn create(d: &Driver, req: CreateSnapshotRequest) -> Result<CreateSnapshotResponse> {
    let name = required("name", &req.name)?;
    if name.len() > MAX_ID_LEN {
        return Err(CsiError::invalid(format!(
            "name is longer than {MAX_ID_LEN} bytes"
        )));
    }
    let source = crate::driver::volume_id(&req.source_volume_id)
        .map_err(|_| CsiError::missing("source_volume_id"))?;
    let token = require_token(&req.secrets, "CreateSnapshot")?;
    let user = ceph_user(&req.secrets)?;
    let spec = SnapshotSpec {
        // A snapshot of an RBD volume whose id says where it is says so too.
        id: RbdId::parse(&source)
            .and_then(|v| v.snapshot_named(name))
            .map_or_else(|| volume_id_for_name(name), |s| s.encode()),
        name: name.to_owned(),
        source,
    };
    tracing::info!(snapshot = %spec.id, volume = %spec.source, "CreateSnapshot");
    let src_guard = d.lock(&spec.source).await?;
    let guard = d.lock(&spec.id).await?;
    let rec = d
        .blocking(Some(guard), move |b| {
            let _src = src_guard;
            b.recover(&spec.source, user.as_deref())?;
            b.recover(&spec.id, user.as_deref())?;
            b.create_snapshot(&spec, &token)
        })
        .await?;
    Ok(CreateSnapshotResponse {
        snapshot: Some(to_pb(&rec)),
    })
}

/// Never depends on the tenant's credential (as DeleteVolume): a refused or missing token
/// falls back to the driver's own.
pub async fn delete(d: &Driver, req: DeleteSnapshotRequest) -> Result<()> {
    let id = required("snapshot_id", &req.snapshot_id)?.to_owned();
    let token = optional_token(&req.secrets).ok().flatten();
    let user = ceph_user(&req.secrets).ok().flatten();
    tracing::info!(snapshot = %id, "DeleteSnapshot");
    let guard = d.lock(&id).await?;
    d.blocking(Some(guard), move |b| {
        b.recover(&id, user.as_deref())?;
        match b.delete_snapshot(&id, token.as_ref()) {
            Err(CsiError::Unauthenticated(_) | CsiError::PermissionDenied(_))
                if token.is_some() =>
            {
                b.delete_snapshot(&id, None)
            }
            r => r,
        }
    })
    .await
}

pub async fn list(d: &Driver, req: ListSnapshotsRequest) -> Result<ListSnapshotsResponse> {
    if req.max_entries < 0 {
        return Err(CsiError::invalid("max_entries must not be negative"));
    }
    let after = (!req.starting_token.is_empty())
        .then(|| decode_token(&req.starting_token))
        .transpose()?;
    let all = d.blocking(None, |b| b.list_snapshots()).await?;
    let rest: Vec<&SnapshotRecord> = all
        .iter()
        .filter(|r| req.snapshot_id.is_empty() || r.id == req.snapshot_id)
        .filter(|r| req.source_volume_id.is_empty() || r.source == req.source_volume_id)
        .filter(|r| after.as_ref().is_none_or(|a| r.id.as_str() > a.as_str()))
        .collect();
    let max = match req.max_entries {
        0 => usize::MAX,
        n => n as usize,
    };
    let page = &rest[..rest.len().min(max)];
    let next_token = match page.last() {
        Some(last) if rest.len() > page.len() => encode_token(&last.id),
        _ => String::new(),
    };
    Ok(ListSnapshotsResponse {
        entries: page
            .iter()
            .map(|r| list_snapshots_response::Entry {
                snapshot: Some(to_pb(r)),
            })
            .collect(),
        next_token,
    })
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
    fn copies_are_at_least_the_source_size() {
        assert_eq!(copy_capacity(None, 1 << 30, 64 << 20).unwrap(), 64 << 20);
        assert_eq!(
            copy_capacity(Some(&range(128 << 20, 0)), 128 << 20, 64 << 20).unwrap(),
            128 << 20
        );
        assert_eq!(
            copy_capacity(Some(&range(4096, 0)), 4096, 64 << 20).unwrap(),
            64 << 20
        );
        assert!(matches!(
            copy_capacity(Some(&range(0, 4096)), 4096, 64 << 20),
            Err(CsiError::OutOfRange(_))
        ));
    }

    #[test]
    fn content_sources_need_their_ids() {
        let s = VolumeContentSource {
            r#type: Some(Type::Snapshot(SnapshotSource {
                snapshot_id: String::new(),
            })),
        };
        assert!(matches!(
            content_source(Some(&s)),
            Err(CsiError::Invalid(_))
        ));
        let v = to_pb_source(&ContentSource::Volume("pvc-1".into()));
        assert_eq!(
            content_source(Some(&v)).unwrap(),
            Some(ContentSource::Volume("pvc-1".into()))
        );
        assert_eq!(content_source(None).unwrap(), None);
    }
}
