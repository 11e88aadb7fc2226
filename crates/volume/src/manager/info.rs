//! What `status` and `list` report: the recorded metadata and what is open on this node, as
//! the crate's own types (no secrets, no KMS call).

use super::Manager;
use crate::datapath::{self, DataPathKind, Runtime};
use crate::error::{Error, Result};
use crate::meta::{LuksParams, Protection, StoreSpec, VolumeMeta};
use crate::state::{Pending, State};
use crate::vocab::{FsType, ProtectionMode};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A volume as `status`/`list` report it (no secrets).
#[derive(Debug, Clone, Serialize)]
pub struct VolumeInfo {
    pub id: String,
    pub tenant: String,
    pub state: State,
    pub protection: ProtectionMode,
    pub size: u64,
    pub store: StoreSpec,
    pub fs_type: FsType,
    pub filesystem_created: bool,
    pub fs_grow_pending: bool,
    pub mounted: bool,
    pub target: Option<PathBuf>,
    /// The decrypted block device while the volume is open on this node.
    pub device: Option<String>,
    pub datapath: Option<DataPathKind>,
    pub pending: Option<Pending>,
    pub kek_version: Option<u64>,
    pub luks: LuksParams,
    pub created_at: u64,
    pub slot_rotated_at: Option<u64>,
    pub kek_rotated_at: Option<u64>,
    pub shredded_at: Option<u64>,
    pub volume_key_rotation: &'static str,
}

impl Manager {
    pub(super) fn info(&self, dir: &Path, m: &VolumeMeta) -> VolumeInfo {
        let rt = Runtime::load(dir);
        let mounted = rt
            .as_ref()
            .and_then(|r| r.target.as_ref())
            .is_some_and(|t| datapath::is_mounted(t));
        VolumeInfo {
            id: m.id.clone(),
            tenant: m.tenant.clone(),
            state: m.state,
            protection: m.protection.mode(),
            size: m.size,
            store: m.store.clone(),
            fs_type: m.fs_type,
            filesystem_created: m.filesystem_created,
            fs_grow_pending: m.fs_grow_pending,
            mounted,
            target: rt.as_ref().and_then(|r| r.target.clone()),
            device: rt.as_ref().and_then(Runtime::device),
            datapath: rt.and_then(|r| r.datapath),
            pending: m.pending.clone(),
            kek_version: match &m.protection {
                Protection::Envelope { key_version, .. } => Some(*key_version),
                Protection::Kv { .. } => None,
            },
            luks: m.luks.clone(),
            created_at: m.created_at,
            slot_rotated_at: m.slot_rotated_at,
            kek_rotated_at: m.kek_rotated_at,
            shredded_at: m.shredded_at,
            volume_key_rotation: "not supported yet: volume-key re-encryption comes later",
        }
    }

    /// Status from the local metadata (no key material, no KMS call).
    pub fn status(&self, id: &str) -> Result<VolumeInfo> {
        let (dir, m) = self.load(id)?;
        Ok(self.info(&dir, &m))
    }

    /// Every volume under the root, sorted by id.
    pub fn list(&self) -> Result<Vec<VolumeInfo>> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&self.cfg.root) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io("list volumes", e)),
        };
        for e in rd.flatten() {
            let dir = e.path();
            if let Ok(m) = VolumeMeta::load(&dir) {
                out.push(self.info(&dir, &m));
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}
