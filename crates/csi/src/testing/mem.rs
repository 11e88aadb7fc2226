//! TEST ONLY: an in-memory [`VolumeBackend`] to exercise request validation, idempotency,
//! locking and error mapping over the real gRPC socket. It encrypts nothing and mounts
//! nothing (publish creates and removes the target directory so path semantics can be
//! checked). It is compiled only under `cfg(test)` and is never served by the binary.

use crate::backend::*;
use crate::caps::VolumeCap;
use crate::errors::{CsiError, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use strongroom_volume::SecretString;

#[derive(Default)]
struct Vol {
    rec: Option<VolumeRecord>,
    staged: Option<(PathBuf, VolumeCap)>,
    published: BTreeMap<PathBuf, (VolumeCap, bool)>,
}

#[derive(Default)]
pub struct MemBackend {
    vols: Mutex<BTreeMap<String, Vol>>,
    /// token → tenant it authenticates.
    tokens: Mutex<HashMap<String, String>>,
    pub kms_down: std::sync::atomic::AtomicBool,
    /// Each mutating call sleeps this long (to provoke concurrent calls).
    pub delay: Mutex<Duration>,
    pub max_volume_size: Option<u64>,
    /// Deletions done without a tenant token (the driver's own credential).
    pub admin_deletes: std::sync::atomic::AtomicUsize,
}

impl MemBackend {
    pub fn with_tenant(self, token: &str, tenant: &str) -> Self {
        self.tokens
            .lock()
            .unwrap()
            .insert(token.to_owned(), tenant.to_owned());
        self
    }

    fn auth(&self, token: &SecretString, tenant: &str) -> Result<()> {
        if self.kms_down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(CsiError::Unavailable("connection refused".into()));
        }
        match self.tokens.lock().unwrap().get(token.expose()) {
            None => Err(CsiError::Unauthenticated(
                "the token is invalid, expired or revoked".into(),
            )),
            Some(t) if t != tenant => Err(CsiError::PermissionDenied(
                "the token has no access to this volume's key".into(),
            )),
            Some(_) => Ok(()),
        }
    }

    fn pause(&self) {
        let d = *self.delay.lock().unwrap();
        if !d.is_zero() {
            std::thread::sleep(d);
        }
    }

    pub fn is_staged(&self, id: &str) -> bool {
        self.vols
            .lock()
            .unwrap()
            .get(id)
            .is_some_and(|v| v.staged.is_some())
    }
}

impl VolumeBackend for MemBackend {
    fn create(&self, spec: &CreateSpec, token: &SecretString) -> Result<VolumeRecord> {
        if let Some(existing) = self.get(&spec.id)? {
            self.auth(token, &existing.tenant)?;
        }
        self.auth(token, &spec.params.tenant)?;
        self.pause();
        let rec = VolumeRecord {
            id: spec.id.clone(),
            tenant: spec.params.tenant.clone(),
            capacity: spec.capacity,
            protection: spec.params.protection.mode(),
            fs_type: spec.fs_type,
            kms_id: spec.params.kms_id.clone(),
            ready: true,
            published_nodes: vec![],
            rbd: None,
            source: None,
        };
        let mut v = self.vols.lock().unwrap();
        let e = v.entry(spec.id.clone()).or_default();
        Ok(e.rec.get_or_insert(rec).clone())
    }

    fn get(&self, id: &str) -> Result<Option<VolumeRecord>> {
        Ok(self
            .vols
            .lock()
            .unwrap()
            .get(id)
            .and_then(|v| v.rec.clone()))
    }

    fn list(&self) -> Result<Vec<VolumeRecord>> {
        Ok(self
            .vols
            .lock()
            .unwrap()
            .values()
            .filter_map(|v| v.rec.clone())
            .collect())
    }

    fn delete(&self, id: &str, token: Option<&SecretString>) -> Result<()> {
        let tenant = match self.get(id)? {
            None => return Err(CsiError::NotFound(id.into())),
            Some(r) => r.tenant,
        };
        match token {
            Some(t) => self.auth(t, &tenant)?,
            None => {
                self.admin_deletes
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        self.pause();
        self.vols.lock().unwrap().remove(id);
        Ok(())
    }

    fn capacity(&self) -> Result<Capacity> {
        Ok(Capacity {
            available: 100 << 30,
            max_volume_size: self.max_volume_size,
        })
    }

    fn expand(
        &self,
        id: &str,
        new_capacity: u64,
        _t: Option<&SecretString>,
    ) -> Result<ExpandResult> {
        self.pause();
        let mut v = self.vols.lock().unwrap();
        let rec = v
            .get_mut(id)
            .and_then(|v| v.rec.as_mut())
            .ok_or_else(|| CsiError::NotFound(id.into()))?;
        rec.capacity = rec.capacity.max(new_capacity);
        Ok(ExpandResult {
            capacity: rec.capacity,
            node_expansion_required: true,
        })
    }

    fn stage(&self, spec: &StageSpec, token: &SecretString) -> Result<()> {
        let tenant = self
            .get(&spec.id)?
            .ok_or_else(|| CsiError::NotFound(spec.id.clone()))?
            .tenant;
        self.auth(token, &tenant)?;
        self.pause();
        let mut v = self.vols.lock().unwrap();
        let vol = v.get_mut(&spec.id).unwrap();
        match &vol.staged {
            Some((p, c)) if p == &spec.staging_path && c == &spec.cap => Ok(()),
            Some((p, _)) if p == &spec.staging_path => Err(CsiError::AlreadyExists(
                "staged at this path with another capability".into(),
            )),
            Some(_) => Err(CsiError::FailedPrecondition(
                "staged at another path".into(),
            )),
            None => {
                vol.staged = Some((spec.staging_path.clone(), spec.cap.clone()));
                Ok(())
            }
        }
    }

    fn unstage(&self, id: &str, staging_path: &Path) -> Result<()> {
        self.pause();
        let mut v = self.vols.lock().unwrap();
        let Some(vol) = v.get_mut(id) else {
            return Ok(());
        };
        if vol.staged.as_ref().is_some_and(|(p, _)| p == staging_path) {
            vol.staged = None;
        }
        Ok(())
    }

    fn publish(&self, spec: &PublishSpec) -> Result<()> {
        self.pause();
        let mut v = self.vols.lock().unwrap();
        let vol = v
            .get_mut(&spec.id)
            .ok_or_else(|| CsiError::NotFound(spec.id.clone()))?;
        if vol.staged.as_ref().map(|(p, _)| p) != Some(&spec.staging_path) {
            return Err(CsiError::FailedPrecondition(format!(
                "volume {} is not staged at {}",
                spec.id,
                spec.staging_path.display()
            )));
        }
        if let Some((c, ro)) = vol.published.get(&spec.target_path) {
            return if c == &spec.cap && *ro == spec.readonly {
                Ok(())
            } else {
                Err(CsiError::AlreadyExists(
                    "published at this target with other arguments".into(),
                ))
            };
        }
        if spec.cap.mode.single_target() && !vol.published.is_empty() {
            return Err(CsiError::FailedPrecondition(
                "single-writer volume already published at another target".into(),
            ));
        }
        std::fs::create_dir_all(&spec.target_path)
            .map_err(|e| CsiError::Internal(format!("create target: {e}")))?;
        vol.published
            .insert(spec.target_path.clone(), (spec.cap.clone(), spec.readonly));
        Ok(())
    }

    fn unpublish(&self, id: &str, target_path: &Path) -> Result<()> {
        let mut v = self.vols.lock().unwrap();
        let ours = v
            .get_mut(id)
            .is_some_and(|vol| vol.published.remove(target_path).is_some());
        if !ours {
            return Ok(()); // not published there by us: nothing to remove
        }
        match std::fs::remove_dir(target_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CsiError::Internal(format!("remove target: {e}")))
            }
            _ => Ok(()),
        }
    }

    fn stats(&self, id: &str, path: &Path) -> Result<VolumeStats> {
        let v = self.vols.lock().unwrap();
        let vol = v
            .get(id)
            .filter(|v| v.rec.is_some())
            .ok_or_else(|| CsiError::NotFound(format!("volume {id}")))?;
        let at_path =
            vol.staged.as_ref().is_some_and(|(p, _)| p == path) || vol.published.contains_key(path);
        if !at_path {
            return Err(CsiError::NotFound(format!(
                "volume {id} is not at {}",
                path.display()
            )));
        }
        let cap = vol.rec.as_ref().unwrap().capacity;
        Ok(VolumeStats {
            bytes: Usage {
                total: cap,
                used: 4096,
                available: cap - 4096,
            },
            inodes: Some(Usage {
                total: 1000,
                used: 11,
                available: 989,
            }),
        })
    }

    fn expand_node(
        &self,
        id: &str,
        _path: &Path,
        _new: Option<u64>,
        _t: Option<&SecretString>,
    ) -> Result<u64> {
        self.get(id)?
            .map(|r| r.capacity)
            .ok_or_else(|| CsiError::NotFound(id.into()))
    }
}

impl MemBackend {
    pub fn list_ids(&self) -> Vec<String> {
        self.vols.lock().unwrap().keys().cloned().collect()
    }
}
