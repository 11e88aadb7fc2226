//! Growing a volume: the store ([`Manager::resize`], recorded as [`Pending::Resize`] first),
//! then, where it is open, the device and the filesystem ([`Manager::grow_attached`]).

use super::{fault, lock, Manager, VolumeInfo};
use crate::datapath::{self, fuse, loopdev, DataPathKind, Runtime};
use crate::error::{Error, Result};
use crate::kms::Credential;
use crate::meta::VolumeMeta;
use crate::state::Pending;
use crate::store;
use std::path::Path;

impl Manager {
    /// Grow the volume to `new_size` usable bytes (online if mounted: the loop device and
    /// the filesystem are grown too). Shrinking is refused.
    pub fn resize(&self, id: &str, cred: &Credential, new_size: u64) -> Result<VolumeInfo> {
        let (dir, mut m) = self.load(id)?;
        let _l = lock(&dir)?;
        let secret = self.authorized_secret(&dir, &mut m, cred)?;
        let new_size = new_size.div_ceil(4096) * 4096;
        if new_size < m.size {
            return Err(Error::InvalidArgument(format!(
                "volume {} has {} bytes; shrinking is not supported",
                m.id, m.size
            )));
        }
        let old_size = m.size;
        if new_size > m.size {
            m.pending = Some(Pending::Resize { new_size });
            m.store(&dir)?;
            fault("resize:recorded");
            self.finish_resize(&dir, &mut m, new_size)?;
        }
        let grown_online = self.grow_online(&dir, &mut m, Some(&secret))?;
        if !grown_online && m.filesystem_created && new_size > old_size {
            m.fs_grow_pending = true;
            m.store(&dir)?;
        }
        self.audit("resize", &m, "tenant", "ok");
        Ok(self.info(&dir, &m))
    }

    /// After the store was grown (by [`Self::resize`], possibly on another node): grow the
    /// open device and the mounted filesystem here. The userspace path needs no credential
    /// (CSI NodeExpandVolume may carry none); a dm-crypt mapping cannot grow without the
    /// keyslot secret, fetched as `cred` (`Unauthenticated` without one). A volume not open
    /// on this node is `FailedPrecondition`.
    pub fn grow_attached(&self, id: &str, cred: Option<&Credential>) -> Result<VolumeInfo> {
        let (dir, mut m) = self.load(id)?;
        let _l = lock(&dir)?;
        Self::require_formatted(&m)?;
        let kernel = Runtime::load(&dir).is_some_and(|r| r.dm_name.is_some());
        let secret = match cred {
            Some(c) if kernel => Some(self.secret(&m, c)?),
            _ => None,
        };
        if let Some(Pending::Resize { new_size }) = m.pending.clone() {
            self.finish_resize(&dir, &mut m, new_size)?;
        }
        if !Runtime::load(&dir).is_some_and(|r| r.loop_dev.is_some() || r.dm_name.is_some()) {
            return Err(Error::FailedPrecondition(format!(
                "volume {id} is not open on this node"
            )));
        }
        if !self.grow_online(&dir, &mut m, secret.as_deref().map(|s| &s[..]))?
            && m.filesystem_created
        {
            m.fs_grow_pending = true;
            m.store(&dir)?;
        }
        self.audit("grow", &m, "node", "ok");
        Ok(self.info(&dir, &m))
    }

    /// The pending resize: grow the store, record the new size.
    pub(super) fn finish_resize(
        &self,
        dir: &Path,
        m: &mut VolumeMeta,
        new_size: u64,
    ) -> Result<()> {
        self.say(&format!("growing {} to {new_size} bytes", m.id));
        store::from_spec(&m.store).grow(new_size + m.luks.data_offset)?;
        fault("resize:grown");
        m.size = new_size;
        m.pending = None;
        m.store(dir)
    }

    /// If the volume is open on this node: make the loop (and dm-crypt) device see the
    /// backing store's size and grow a mounted filesystem. Returns whether the filesystem is
    /// taken care of (grown online, or none to grow); `false` leaves it for the next mount.
    /// The data segment is dynamic, so growing the store grows the volume; only a dm-crypt
    /// mapping needs `secret` (the keyslot secret) to load its resized table.
    fn grow_online(&self, dir: &Path, m: &mut VolumeMeta, secret: Option<&[u8]>) -> Result<bool> {
        let Some(rt) = Runtime::load(dir) else {
            return Ok(false);
        };
        if rt.loop_dev.is_none() && rt.dm_name.is_none() {
            return Ok(false);
        }
        refresh_devices(&rt, secret)?;
        let Some(dev) = rt.device() else {
            return Ok(false);
        };
        let Some(t) = rt.target.as_ref().filter(|t| datapath::is_mounted(t)) else {
            // Block mode: the device has its new size; a filesystem made by an earlier mount
            // (if any) grows at the next mount.
            return Ok(!m.filesystem_created);
        };
        self.say(&format!("growing the {} filesystem", m.fs_type));
        if let Err(e) = datapath::grow_fs(m.fs_type, &dev, t) {
            // E.g. ext4 online resize without CAP_SYS_RESOURCE: grow at next mount.
            self.say(&format!(
                "the filesystem could not be grown online ({e}); it grows at the next mount"
            ));
            m.fs_grow_pending = true;
            m.store(dir)?;
        } else if m.fs_grow_pending {
            m.fs_grow_pending = false;
            m.store(dir)?;
        }
        Ok(true)
    }
}

/// Make the devices of an open volume see the store's new size.
fn refresh_devices(rt: &Runtime, secret: Option<&[u8]>) -> Result<()> {
    if rt.datapath == Some(DataPathKind::Userspace) {
        if let Some(fd) = &rt.fuse_dir {
            // Make the FUSE file report the new size before the loop re-reads it.
            let _ = std::fs::metadata(fd.join(fuse::FILE_NAME));
        }
    }
    if let Some(lo) = &rt.loop_dev {
        loopdev::refresh_capacity(lo)?;
    }
    if let Some(n) = &rt.dm_name {
        let secret = secret.ok_or_else(|| {
            Error::Unauthenticated(
                "growing a dm-crypt mapping needs the tenant's token (CSI: set \
                 csi.storage.k8s.io/node-expand-secret-name in the StorageClass)"
                    .into(),
            )
        })?;
        datapath::dmcrypt::resize(n, secret)?;
    }
    Ok(())
}
