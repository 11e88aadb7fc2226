//! Opening a volume on this node: a mounted filesystem ([`Manager::mount`]) or a bare
//! decrypted block device ([`Manager::attach`]), over the userspace data path (FUSE + loop)
//! or the kernel's (dm-crypt); and taking it all down again ([`Manager::unmount`]). What was
//! set up is recorded in the [`Runtime`] record first, so teardown also works after a crash.

use super::{fault, lock, process_alive, unlock, Manager, VolumeInfo};
use crate::datapath::holder::{HolderCommand, HolderLauncher};
use crate::datapath::holder_host;
use crate::datapath::keeper::Role;
use crate::datapath::{self, fuse, holder, krbd, loopdev, DataPathKind, Runtime};
use crate::error::{Error, Result};
use crate::kms::Credential;
use crate::meta::{StoreSpec, VolumeMeta};
use crate::rbd_claim::{self, Claimant};
use crate::store;
use crate::vocab::FsType;
use rustix::fd::OwnedFd;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

impl Manager {
    /// Mount the volume's filesystem at `target` (mkfs once, by state). Idempotent.
    /// Userspace path: the FUSE session runs on threads of this process until
    /// [`Self::unmount`] (or [`Self::serve_until_unmounted`]).
    pub fn mount(&self, id: &str, cred: &Credential, target: &Path) -> Result<VolumeInfo> {
        self.activate(id, cred, Some(target))
    }

    /// Open the volume as a decrypted block device without a filesystem (CSI block mode):
    /// `info.device` names it. Idempotent; no mkfs, ever.
    pub fn attach(&self, id: &str, cred: &Credential) -> Result<VolumeInfo> {
        self.activate(id, cred, None)
    }

    /// The shared body of [`Self::mount`] (`target` set) and [`Self::attach`] (`None`).
    fn activate(&self, id: &str, cred: &Credential, target: Option<&Path>) -> Result<VolumeInfo> {
        let (dir, mut m) = self.load(id)?;
        let _l = lock(&dir)?;
        let secret = self.authorized_secret(&dir, &mut m, cred)?;
        if self.already_open(&dir, &m, target)? {
            return Ok(self.info(&dir, &m));
        }
        let kind = match (&m.store, self.cfg.datapath) {
            (_, Some(k)) => k,
            (StoreSpec::Rbd { .. }, None) => DataPathKind::detect_rbd(),
            (_, None) => DataPathKind::detect(),
        };
        let r = (|| {
            if let (DataPathKind::Kernel, StoreSpec::Rbd { .. }, Some(t)) = (kind, &m.store, target)
            {
                self.prepare_fs_unlocked(&dir, &mut m, &secret, t)?;
            }
            let dev = match kind {
                DataPathKind::Userspace => self.attach_userspace(&dir, &m, &secret)?,
                DataPathKind::Kernel => self.attach_kernel(&dir, &m, &secret)?,
            };
            match target {
                Some(t) => self.mount_fs(&dir, &mut m, &dev, t, Record::Now),
                None => Ok(()),
            }
        })();
        if let Err(e) = r {
            let _ = self.teardown(&dir, &m.id);
            return Err(e);
        }
        let op = if target.is_some() { "mount" } else { "attach" };
        self.audit(op, &m, "tenant", "ok");
        Ok(self.info(&dir, &m))
    }

    /// Whether the volume is open here as asked (same target, or attached without one) and
    /// still served. Anything else that is set up (another target, another mode, a data
    /// path whose server died with a killed driver) is taken down to be set up again.
    fn already_open(&self, dir: &Path, m: &VolumeMeta, target: Option<&Path>) -> Result<bool> {
        let Some(rt) = Runtime::load(dir) else {
            return Ok(false);
        };
        let same = match target {
            Some(t) => rt.target.as_deref() == Some(t) && datapath::is_mounted(t),
            None => {
                rt.target.is_none()
                    && (rt.dm_name.is_some()
                        || rt.loop_dev.as_deref().is_some_and(loopdev::is_attached))
            }
        };
        if same && self.serving(&m.id, &rt) {
            return Ok(true);
        }
        self.teardown(dir, &m.id)?;
        Ok(false)
    }

    /// Whether the process serving a userspace data path is still alive (dm-crypt lives in
    /// the kernel and always is). A FUSE mount whose server died answers ENOTCONN forever.
    fn serving(&self, id: &str, rt: &Runtime) -> bool {
        if rt.datapath != Some(DataPathKind::Userspace) {
            return true;
        }
        match (rt.pid, &rt.holder_nonce) {
            (Some(p), _) if p == std::process::id() => self
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(id),
            // A holder proves itself (its pid may be in another PID namespace).
            (_, Some(n)) => holder::verify(&self.volume_dir(id), id, n).is_some(),
            (Some(p), None) => process_alive(p),
            (None, None) => false,
        }
    }

    /// FUSE file over the decrypted data segment (served by a volume holder, or by this
    /// process), then a loop device on it; returns the device.
    fn attach_userspace(&self, dir: &Path, m: &VolumeMeta, secret: &[u8]) -> Result<String> {
        let fuse_dir = dir.join("fuse");
        let mut rt = Runtime {
            datapath: Some(DataPathKind::Userspace),
            fuse_dir: Some(fuse_dir.clone()),
            claim: Some(rbd_claim::new_token()),
            ..Default::default()
        };
        match &self.holder {
            Some(HolderLauncher::Spawn(cmd)) => {
                let nonce = holder::new_nonce();
                rt.holder_nonce = Some(nonce.clone());
                let child = holder::start(cmd, dir, &m.id)?;
                rt.pid = Some(child.id());
                rt.save(dir)?;
                let ceph = crate::store_rbd::given_key(&m.store);
                holder::handshake(child, dir, &m.id, &nonce, ceph.as_ref(), secret)?;
            }
            Some(HolderLauncher::Host(socket)) => {
                let nonce = holder::new_nonce();
                rt.holder_nonce = Some(nonce.clone());
                // Recorded before the secret leaves: teardown finds whatever gets mounted.
                rt.save(dir)?;
                let ceph = crate::store_rbd::given_key(&m.store);
                let pid = holder_host::start_hosted(socket, &m.id, &nonce, ceph.as_ref(), secret)?;
                rt.pid = Some(pid);
                rt.save(dir)?;
            }
            None => {
                rt.save(dir)?; // the claim's token, before the claim
                let io = crypt_io(dir, m, secret)?;
                rt.pid = Some(std::process::id());
                rt.save(dir)?;
                let session = fuse::spawn(Arc::new(io), &fuse_dir)?;
                self.sessions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(m.id.clone(), session);
            }
        }
        fault("mount:fuse");
        let file = fuse_dir.join(fuse::FILE_NAME);
        wait_for(&file)?;
        let lo = loopdev::attach(&file, true, Some(m.luks.sector_size))?;
        rt.loop_dev = Some(lo.clone());
        rt.save(dir)?;
        fault("mount:loop");
        Ok(lo)
    }

    /// dm-crypt over the store (through a loop device for files, the kernel RBD driver for
    /// RBD images); returns the mapped device.
    fn attach_kernel(&self, dir: &Path, m: &VolumeMeta, secret: &[u8]) -> Result<String> {
        let mut rt = Runtime {
            datapath: Some(DataPathKind::Kernel),
            ..Default::default()
        };
        rt.save(dir)?;
        let dev = match &m.store {
            StoreSpec::Rbd { .. } => map_rbd(dir, m, &mut rt)?,
            _ => {
                let st = store::from_spec(&m.store);
                let path = st.local_path().ok_or_else(|| {
                    Error::InvalidArgument("store has no local path for dm-crypt".into())
                })?;
                if matches!(m.store, StoreSpec::File { .. }) {
                    let lo = loopdev::attach(path, false, None)?;
                    fault("mount:kernel-loop-attached");
                    rt.loop_dev = Some(lo.clone());
                    rt.save(dir)?;
                    fault("mount:kernel-loop");
                    PathBuf::from(lo)
                } else {
                    path.to_path_buf()
                }
            }
        };
        let name = datapath::dmcrypt::mapper_name(&m.id);
        let mapped = datapath::dmcrypt::open(&dev, &name, secret)?;
        fault("mount:dm-opened");
        rt.dm_name = Some(name);
        rt.save(dir)?;
        fault("mount:dm");
        Ok(mapped)
    }

    /// The kernel RBD mapping holds the image's exclusive lock, and while it does librbd
    /// cannot update the image's metadata record (EROFS). So filesystem work that the record
    /// must show (mkfs, a pending grow) is done first, in a mapping that is removed before the
    /// record is written: to the image first, so that no node ever makes a filesystem over
    /// this one. A crash before that leaves a filesystem nobody has written to yet.
    fn prepare_fs_unlocked(
        &self,
        dir: &Path,
        m: &mut VolumeMeta,
        secret: &[u8],
        target: &Path,
    ) -> Result<()> {
        if m.filesystem_created && !m.fs_grow_pending {
            return Ok(());
        }
        let dev = self.attach_kernel(dir, m, secret)?;
        let r = self.mount_fs(dir, m, &dev, target, Record::Later);
        self.teardown(dir, &m.id)?;
        r?;
        m.generation += 1;
        store::from_spec(&m.store).put_meta(&m.encode()?)?;
        m.store_local(dir)?;
        fault("mount:fs-recorded");
        Ok(())
    }

    /// The filesystem (made once, by state) mounted at `target`.
    fn mount_fs(
        &self,
        dir: &Path,
        m: &mut VolumeMeta,
        dev: &str,
        target: &Path,
        rec: Record,
    ) -> Result<()> {
        self.make_fs_once(dir, m, dev, rec)?;
        // Recorded before the mount (teardown unmounts only what is mounted): a crash right
        // after the mount left an unrecorded filesystem holding the loop device, so the FUSE
        // file stayed open and teardown waited for its holder in vain.
        let mut rt = Runtime::load(dir).unwrap_or_default();
        rt.target = Some(target.to_path_buf());
        rt.save(dir)?;
        datapath::mount(dev, target, m.fs_type)?;
        fault("mount:mounted");
        self.grow_after_mount(dir, m, dev, target, rec)
    }

    /// mkfs on the first mount only (decided by the recorded state, never by a probe); an
    /// ext4 whose growth is pending grows offline before it is mounted.
    fn make_fs_once(&self, dir: &Path, m: &mut VolumeMeta, dev: &str, rec: Record) -> Result<()> {
        if !m.filesystem_created {
            self.say(&format!("making {} filesystem on {}", m.fs_type, m.id));
            datapath::mkfs(m.fs_type, dev)?;
            m.filesystem_created = true;
            m.fs_grow_pending = false;
            rec.store(dir, m)?;
        } else if m.fs_grow_pending && m.fs_type == FsType::Ext4 {
            self.say(&format!(
                "growing the ext4 filesystem of {} (offline)",
                m.id
            ));
            datapath::grow_fs_offline(dev)?;
            m.fs_grow_pending = false;
            rec.store(dir, m)?;
        }
        Ok(())
    }

    /// After the mount: an XFS filesystem can only grow online.
    fn grow_after_mount(
        &self,
        dir: &Path,
        m: &mut VolumeMeta,
        dev: &str,
        target: &Path,
        rec: Record,
    ) -> Result<()> {
        if m.fs_grow_pending {
            datapath::grow_fs(m.fs_type, dev, target)?;
            m.fs_grow_pending = false;
            rec.store(dir, m)?;
        }
        Ok(())
    }

    /// Unmount and tear down whatever this node set up for the volume (filesystem, loop
    /// device, FUSE mount or dm-crypt mapping) and drop its cached keys. Needs no credential:
    /// nothing is decrypted or authorised, only this node's own mounts are removed (which root
    /// on the node can do anyway), so it works with the key manager down or the tenant's token
    /// revoked (CSI NodeUnstageVolume carries no secret either). Idempotent; a volume that does
    /// not exist is `NotFound`.
    pub fn unmount(&self, id: &str) -> Result<()> {
        let (dir, m) = self.load(id)?;
        let _l = lock(&dir)?;
        self.teardown(&dir, id)?;
        self.audit("unmount", &m, "node", "ok");
        Ok(())
    }

    /// Remove everything a mount set up, in reverse order. Idempotent, also after a crash.
    pub(super) fn teardown(&self, dir: &Path, id: &str) -> Result<()> {
        let rt = Runtime::load(dir).unwrap_or_default();
        // A holder proven live before its FUSE mount goes is waited for below.
        let live_holder = rt
            .holder_nonce
            .as_deref()
            .is_some_and(|n| holder::verify(dir, id, n).is_some());
        if let Some(t) = &rt.target {
            datapath::umount(t)?;
            fault("unmount:umounted");
        }
        // The mapping's name is fixed by the volume id: also closed when a crash came between
        // `cryptsetup open` and its record.
        datapath::dmcrypt::close(&datapath::dmcrypt::mapper_name(id))?;
        if rt.dm_name.is_some() {
            fault("unmount:dm-closed");
        }
        if let Some(lo) = &rt.loop_dev {
            loopdev::detach(lo)?;
        }
        // Loop devices on the volume's file attached by a kernel-path mount that crashed
        // before recording them.
        if rt.datapath == Some(DataPathKind::Kernel) {
            if let Ok(VolumeMeta {
                store: StoreSpec::File { path },
                ..
            }) = VolumeMeta::load(dir)
            {
                for lo in loopdev::attached_to(Path::new(&path)) {
                    loopdev::detach(&lo)?;
                }
            }
        }
        if let Some(img) = &rt.krbd {
            for dev in attach_mappings(img, &rt) {
                krbd::unmap(dev)?;
            }
            fault("unmount:krbd-unmapped");
        }
        if let Some(fd) = &rt.fuse_dir {
            // Any loop device still on the FUSE file (e.g. attached just before a crash).
            for lo in loopdev::attached_to(&fd.join(fuse::FILE_NAME)) {
                let _ = loopdev::detach(&lo);
            }
        }
        // A session served by this process unmounts itself when dropped; unmounting under
        // it first would make its own unmount fail (and log an error).
        drop(self.take_session(id));
        if let Some(fd) = &rt.fuse_dir {
            // Served by another (or a dead) process: unmount it from here.
            datapath::fuse_unmount(fd)?;
        }
        // A holder exits when its FUSE session ends, after closing its store (its server
        // removes its socket then; its pid may be in a holder host's PID namespace).
        let gone = || match (&rt.holder_nonce, rt.pid) {
            (Some(_), _) => !holder::socket_path(dir).exists(),
            (None, Some(pid)) => pid == std::process::id() || !process_alive(pid),
            (None, None) => true,
        };
        wait_for_holder_exit(id, live_holder, gone)?;
        if let Some(token) = &rt.claim {
            self.release_claim(dir, token);
        }
        self.cache.evict(id);
        Runtime::remove(dir);
        Ok(())
    }

    /// Release the attach's claim on its RBD image. Best effort: without Ceph or a key here
    /// (a NodeUnstage carries no secret) the claim stays, and the next attach anywhere breaks
    /// it, as its mapping or holder no longer watches the image.
    fn release_claim(&self, dir: &Path, token: &str) {
        let Some(st) = VolumeMeta::load(dir)
            .ok()
            .and_then(|m| crate::store_rbd::RbdStore::of(&m.store))
        else {
            return;
        };
        if let Err(e) = rbd_claim::release(&st, token) {
            self.say(&format!(
                "the attach claim stays (the next attach breaks it): {e}"
            ));
        }
    }

    fn take_session(&self, id: &str) -> Option<fuser::BackgroundSession> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
    }

    /// The body of a volume holder process (`datapath::holder`) in `role`. The first server
    /// (`Start`) gets the nonce and the keyslot secret on `input`, answers one line to
    /// `answer`, then serves the volume's FUSE file until it is unmounted; a successor server
    /// or a keeper has its link to the other half on `input` (`datapath::keeper`); `cmd`
    /// starts successors. Takes no lock: the process that started the holder holds the
    /// volume's.
    pub fn hold(
        &self,
        id: &str,
        role: Role,
        cmd: HolderCommand,
        input: OwnedFd,
        answer: &mut dyn Write,
    ) -> Result<()> {
        let h = holder::Holder {
            cmd,
            dir: self.volume_dir(id),
            id: id.to_owned(),
        };
        match role {
            Role::Start => {
                let mut input = std::fs::File::from(input);
                holder::run_start(h, &mut input, answer, |secret| {
                    let (dir, m) = self.load(id)?;
                    crypt_io(&dir, &m, secret)
                })
            }
            Role::Server => holder::run_server(h, input, |key| {
                let (dir, m) = self.load(id)?;
                crypt_io_with_key(&dir, &m, key)
            }),
            Role::Keeper => holder::run_keeper(h, input),
        }
    }

    /// The body of a holder host (`datapath::holder_host`): start holders with `cmd` when
    /// asked on `socket`, until killed.
    pub fn host_holders(&self, socket: &Path, cmd: HolderCommand) -> Result<()> {
        holder_host::run_host(socket, self.cfg.root.clone(), cmd)
    }

    /// Have the holder of a userspace mount re-execute its keeper and then its server from
    /// the binary now at its program's path, without an I/O error on the mount.
    pub fn upgrade_holder(&self, id: &str) -> Result<()> {
        let (dir, _) = self.load(id)?;
        holder::upgrade(&dir)
    }

    /// Serve the FUSE session of a userspace mount made by this process until it is
    /// unmounted (the CLI's mount daemon, after [`Self::mount`]); returns at once when this
    /// process serves none for the volume.
    pub fn serve_until_unmounted(&self, id: &str) {
        if let Some(s) = self.take_session(id) {
            fuse::serve_until_unmounted(s, &self.volume_dir(id).join("fuse"));
        }
    }
}

/// When filesystem work is recorded in the volume's metadata.
#[derive(Clone, Copy)]
enum Record {
    /// At once (locally and, for RBD, in the image).
    Now,
    /// By the caller, once the image's lock is released ([`Manager::prepare_fs_unlocked`]).
    Later,
}

impl Record {
    fn store(self, dir: &Path, m: &mut VolumeMeta) -> Result<()> {
        match self {
            Record::Now => m.store(dir),
            Record::Later => Ok(()),
        }
    }
}

/// The kernel RBD mappings this attach made: those whose map line names its token (also one
/// made just before a crash, before its number was recorded), and the recorded device if it
/// still maps the image (a mapping of an older binary, whose line names no token) — never the
/// recorded number alone (after a reboot it may be another image's), and never another
/// attach's mapping of the same image (a refused attach beside a live one leaves that alone).
fn attach_mappings(img: &krbd::KrbdImage, rt: &Runtime) -> Vec<krbd::RbdDev> {
    let token = rt.claim.as_deref();
    krbd::find(img)
        .into_iter()
        .filter(|&d| rt.rbd_dev == Some(d.0) || token.is_some_and(|t| krbd::made_by(d, t)))
        .collect()
}

/// Map the volume's RBD image with the kernel driver and claim it for this attach (a
/// read-write attach elsewhere holds a live claim: FAILED_PRECONDITION, the mapping undone).
/// The image and the claim's token are recorded before the map, so a crash after it leaves
/// a mapping and a claim that teardown finds and removes.
fn map_rbd(dir: &Path, m: &VolumeMeta, rt: &mut Runtime) -> Result<PathBuf> {
    let st = crate::store_rbd::RbdStore::of(&m.store)
        .ok_or_else(|| Error::Internal("not an RBD volume".into()))?;
    let (img, cred) = st.kernel_target()?;
    let token = rbd_claim::new_token();
    rt.krbd = Some(img.clone());
    rt.claim = Some(token.clone());
    rt.save(dir)?;
    let dev = krbd::map(&img, &cred, &token)?;
    fault("mount:krbd-mapped");
    rt.rbd_dev = Some(dev.0);
    rt.save(dir)?;
    let claimed = krbd::client_addr(dev)
        .and_then(|addr| rbd_claim::claim(&st, &token, Claimant::Kernel(&addr)));
    if let Err(e) = claimed {
        let _ = krbd::unmap(dev);
        return Err(e);
    }
    fault("mount:krbd");
    Ok(dev.path())
}

/// The decrypting I/O of the userspace data path, over the volume's store, opened for the
/// attach recorded in `dir` (its claim token).
fn crypt_io(dir: &Path, m: &VolumeMeta, secret: &[u8]) -> Result<fuse::CryptIo> {
    let st = store::from_spec(&m.store);
    let (vol, u) = unlock(st.as_ref(), secret, false)?;
    let dev = st.open_exclusive(&claim_token(dir))?;
    fuse::CryptIo::new(dev, vol.data_segment()?, u.volume_key)
}

/// [`crypt_io`] with the volume key itself (a holder's successor; checked against the
/// header's digest).
fn crypt_io_with_key(dir: &Path, m: &VolumeMeta, key: Zeroizing<Vec<u8>>) -> Result<fuse::CryptIo> {
    let st = store::from_spec(&m.store);
    let vol = strongroom_luks::Volume::open(st.open(false)?)?;
    vol.verify_volume_key(&key)?;
    let dev = st.open_exclusive(&claim_token(dir))?;
    fuse::CryptIo::new(dev, vol.data_segment()?, key)
}

/// The attach's claim token as recorded; a fresh one for an attach recorded without one (by
/// an older binary, whose holder claimed nothing).
fn claim_token(dir: &Path) -> String {
    Runtime::load(dir)
        .and_then(|r| r.claim)
        .unwrap_or_else(rbd_claim::new_token)
}

/// How long teardown waits for a holder that served until the unmount to finish (flush and
/// close its store, e.g. release an RBD image's exclusive lock, and exit).
const HOLDER_EXIT_WAIT: Duration = Duration::from_secs(30);
/// ...and for one that was not verified live (a stale socket or pid after a crash).
const UNVERIFIED_EXIT_WAIT: Duration = Duration::from_secs(2);

/// Wait until `gone` says the holder of volume `id` has finished. Until then its store is
/// not free for another node (an RBD image stays locked), so a holder verified live before
/// the unmount (`live`) that is still there after [`HOLDER_EXIT_WAIT`] is an error
/// (UNAVAILABLE: retry the unmount), never reported as done.
fn wait_for_holder_exit(id: &str, live: bool, gone: impl Fn() -> bool) -> Result<()> {
    let limit = if live {
        HOLDER_EXIT_WAIT
    } else {
        UNVERIFIED_EXIT_WAIT
    };
    let start = std::time::Instant::now();
    while !gone() {
        if start.elapsed() >= limit {
            if !live {
                return Ok(());
            }
            return Err(Error::Unavailable(format!(
                "the volume holder of {id} has not released the volume after {} s; \
                 retry the unmount",
                limit.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn wait_for(p: &Path) -> Result<()> {
    for _ in 0..200 {
        if p.exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(Error::Command(format!("{} did not appear", p.display())))
}
