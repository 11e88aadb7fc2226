//! Data paths: how a volume becomes a mounted filesystem.
//!
//! * [`DataPathKind::Kernel`]: loop (for files) or the kernel RBD driver ([`krbd`], for RBD
//!   images) → dm-crypt via cryptsetup → mkfs/mount. Chosen automatically when the kernel has
//!   device-mapper ([`dmcrypt::available`]) and, for RBD images, the rbd driver.
//! * [`DataPathKind::Userspace`]: a FUSE file exposing the decrypted volume ([`fuse`]) →
//!   loop device ([`loopdev`]) → mkfs/mount. Used everywhere else.
//!
//! What was set up is recorded in a [`Runtime`] file beside the metadata so that teardown
//! (also after a crash) removes every mount, loop device and FUSE mount.

pub mod dmcrypt;
pub mod fuse;
pub mod holder;
pub mod holder_host;
pub mod keeper;
pub mod krbd;
pub mod loopdev;
pub mod mapping;

use crate::error::{Error, Result};
use crate::vocab::FsType;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const RUNTIME_FILE: &str = "runtime.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataPathKind {
    Kernel,
    Userspace,
}

impl DataPathKind {
    pub fn detect() -> Self {
        if dmcrypt::available() {
            DataPathKind::Kernel
        } else {
            DataPathKind::Userspace
        }
    }
    /// [`Self::detect`] for an RBD image: the kernel path needs the kernel's rbd driver
    /// too (loaded here if it is not yet).
    pub fn detect_rbd() -> Self {
        if dmcrypt::available() && krbd::missing().is_none() {
            DataPathKind::Kernel
        } else {
            DataPathKind::Userspace
        }
    }
    /// Why the kernel data path cannot be used here and how to get it (`None`: it can).
    pub fn kernel_missing() -> Option<&'static str> {
        dmcrypt::missing()
    }
    /// The serialized name (`kernel`, `userspace`), for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DataPathKind::Kernel => "kernel",
            DataPathKind::Userspace => "userspace",
        }
    }
    /// A description for people (`kernel (dm-crypt)`); serialized it is `kernel`/`userspace`.
    pub fn describe(self) -> &'static str {
        match self {
            DataPathKind::Kernel => "kernel (dm-crypt)",
            DataPathKind::Userspace => "userspace (FUSE + loop)",
        }
    }
}

/// What a mount set up (persisted, so teardown works from another process or after a crash).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Runtime {
    pub datapath: Option<DataPathKind>,
    pub fuse_dir: Option<PathBuf>,
    pub loop_dev: Option<String>,
    pub dm_name: Option<String>,
    pub target: Option<PathBuf>,
    /// The process serving FUSE, if not the caller: a volume holder's first server (a
    /// successor has another pid; a holder host's holder has its pid in the host's PID
    /// namespace). Informational for holders: they are verified by their nonce.
    pub pid: Option<u32>,
    /// The nonce the holder was given ([`holder::verify`] checks it before re-adoption).
    #[serde(default)]
    pub holder_nonce: Option<String>,
    /// The RBD image the kernel path maps, recorded before the map (teardown then finds a
    /// mapping made just before a crash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub krbd: Option<krbd::KrbdImage>,
    /// Its device once mapped: `/dev/rbd<id>` (for people; teardown finds mappings by image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rbd_dev: Option<u32>,
    /// The token of this attach's claim on an RBD image ([`crate::rbd_claim`]), recorded
    /// before the claim is taken: every process serving the attach claims with it, teardown
    /// releases it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
}

impl Runtime {
    pub fn load(dir: &Path) -> Option<Runtime> {
        std::fs::read(dir.join(RUNTIME_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }
    pub fn save(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join(format!("{RUNTIME_FILE}.tmp"));
        let b = serde_json::to_vec(self).map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::write(&tmp, b).map_err(|e| Error::io("write runtime record", e))?;
        std::fs::rename(&tmp, dir.join(RUNTIME_FILE))
            .map_err(|e| Error::io("rename runtime record", e))
    }
    /// The decrypted block device this record opened: the dm-crypt mapping, or the loop
    /// device on the FUSE file (a loop device of the kernel path holds ciphertext).
    pub fn device(&self) -> Option<String> {
        match (&self.dm_name, &self.loop_dev) {
            (Some(n), _) => Some(format!("/dev/mapper/{n}")),
            (None, Some(lo)) if self.datapath == Some(DataPathKind::Userspace) => Some(lo.clone()),
            _ => None,
        }
    }
    pub fn remove(dir: &Path) {
        let _ = std::fs::remove_file(dir.join(RUNTIME_FILE));
    }
}

/// Run a command (no secrets in its arguments, ever); stdout on success.
pub(crate) fn run(bin: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .map_err(|e| Error::io(format!("run {bin}"), e))?;
    if !out.status.success() {
        return Err(Error::Command(format!(
            "{bin} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Mount points currently in the mount table (from /proc/self/mountinfo, unescaped); empty
/// when the table cannot be read (callers for whom "unknown" must not mean "not mounted" use
/// [`try_mount_points`]).
pub fn mount_points() -> Vec<PathBuf> {
    try_mount_points().unwrap_or_default()
}

/// Mount points currently in the mount table, or why it could not be read.
pub fn try_mount_points() -> std::io::Result<Vec<PathBuf>> {
    Ok(std::fs::read_to_string("/proc/self/mountinfo")?
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect())
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn is_mounted(path: &Path) -> bool {
    let p = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    mount_points().contains(&p)
}

/// Make a filesystem on `dev` (only called when the volume's state says it has none).
pub fn mkfs(fs_type: FsType, dev: &str) -> Result<()> {
    match fs_type {
        FsType::Ext4 => run(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-E",
                "lazy_itable_init=1,lazy_journal_init=1",
                dev,
            ],
        ),
        FsType::Xfs => run("mkfs.xfs", &["-q", "-f", dev]),
    }
    .map(|_| ())
}

pub fn mount(dev: &str, target: &Path, fs_type: FsType) -> Result<()> {
    std::fs::create_dir_all(target)
        .map_err(|e| Error::io(format!("mkdir {}", target.display()), e))?;
    let t = target.to_string_lossy();
    run("mount", &["-t", fs_type.as_str(), "-o", "noatime", dev, &t]).map(|_| ())
}

pub fn umount(target: &Path) -> Result<()> {
    if !is_mounted(target) {
        return Ok(());
    }
    let t = target.to_string_lossy();
    run("umount", &[&t]).map(|_| ())
}

/// Unmount a FUSE mount (also a dead one: "transport endpoint is not connected").
pub fn fuse_unmount(dir: &Path) -> Result<()> {
    if !is_mounted(dir) {
        return Ok(());
    }
    let d = dir.to_string_lossy();
    run("fusermount3", &["-u", &d])
        .or_else(|_| run("umount", &["-l", &d]))
        .map(|_| ())
        // Its server may unmount it meanwhile (a holder whose starter died undoes its mount).
        .or_else(|e| if is_mounted(dir) { Err(e) } else { Ok(()) })
}

/// Grow the filesystem on `dev` mounted at `target` to the device size.
pub fn grow_fs(fs_type: FsType, dev: &str, target: &Path) -> Result<()> {
    match fs_type {
        FsType::Xfs => run("xfs_growfs", &[&target.to_string_lossy()]),
        FsType::Ext4 => run("resize2fs", &[dev]),
    }
    .map(|_| ())
}

/// Grow an unmounted ext4 filesystem to its device.
pub fn grow_fs_offline(dev: &str) -> Result<()> {
    run("resize2fs", &["-f", dev]).map(|_| ())
}
