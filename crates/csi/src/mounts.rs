//! Node-side filesystem plumbing that does not depend on the volume manager: the mount
//! table, bind mounts for NodePublish (read-only honoured; a device node for block volumes),
//! unpublish (unmount and remove the target), and usage statistics.
//!
//! Mounting goes through `mount(8)`/`umount(8)` (no unsafe code); the mount table is read
//! from `/proc/self/mountinfo`.

use crate::backend::{Usage, VolumeStats};
use crate::errors::CsiError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// `major:minor` of the mounted device.
    pub device: String,
    /// Root of the mount within its filesystem (a bind mount of a subdirectory shows it).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub read_only: bool,
    pub fs_type: String,
    pub source: String,
}

/// Undo mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse mountinfo text (lines that do not parse are skipped).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if f.len() < 6 || r.len() < 2 {
                return None;
            }
            Some(MountEntry {
                device: f[2].to_owned(),
                root: PathBuf::from(unescape(f[3])),
                mount_point: PathBuf::from(unescape(f[4])),
                read_only: f[5].split(',').any(|o| o == "ro"),
                fs_type: r[0].to_owned(),
                source: unescape(r[1]),
            })
        })
        .collect()
}

/// The current mount table.
pub fn mount_table() -> Result<Vec<MountEntry>, CsiError> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .map_err(|e| CsiError::Internal(format!("read /proc/self/mountinfo: {e}")))
}

/// The topmost mount at `path`, if `path` is a mount point.
pub fn mount_at(path: &Path) -> Result<Option<MountEntry>, CsiError> {
    Ok(mount_table()?
        .into_iter()
        .rev()
        .find(|m| m.mount_point == path))
}

fn run(cmd: &str, args: &[&str]) -> Result<(), CsiError> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| CsiError::Internal(format!("run {cmd}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(CsiError::Internal(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn io(what: &str, p: &Path, e: std::io::Error) -> CsiError {
    CsiError::Internal(format!("{what} {}: {e}", p.display()))
}

/// Whether `a` and `b` are the same file (a bind mount shows its source's device and inode).
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// How a target is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory bind-mounted from the staged filesystem.
    Filesystem,
    /// A file bind-mounted from the opened device node.
    Block,
}

/// Bind-mount `source` at `target` (created as a directory or an empty file), read-only if
/// asked. Idempotent: an existing bind of the same source with the same read-only flag is
/// OK; another one is ALREADY_EXISTS.
pub fn publish(source: &Path, target: &Path, kind: Kind, read_only: bool) -> Result<(), CsiError> {
    let src = source
        .to_str()
        .ok_or_else(|| CsiError::Invalid("source path is not UTF-8".into()))?;
    let tgt = target
        .to_str()
        .ok_or_else(|| CsiError::Invalid("target_path is not UTF-8".into()))?;
    if let Some(m) = mount_at(target)? {
        let same_source = same_file(source, target);
        return if same_source && m.read_only == read_only {
            Ok(())
        } else {
            Err(CsiError::AlreadyExists(format!(
                "{tgt} is already a mount point with another source or read-only flag"
            )))
        };
    }
    match kind {
        Kind::Filesystem => std::fs::create_dir_all(target).map_err(|e| io("create", target, e))?,
        Kind::Block => {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(target)
                .map_err(|e| io("create", target, e))?;
        }
    }
    run("mount", &["--bind", src, tgt])?;
    if read_only {
        if let Err(e) = run("mount", &["-o", "remount,bind,ro", tgt]) {
            let _ = run("umount", &[tgt]);
            return Err(e);
        }
    }
    Ok(())
}

/// Apply mount flags (e.g. `noexec`, `sync`) to the filesystem mounted at `path`, in one
/// remount. Flags reach mount(8) as one `-o` value, never as separate arguments.
pub fn remount(path: &Path, flags: &[String]) -> Result<(), CsiError> {
    if flags.is_empty() {
        return Ok(());
    }
    for flag in flags {
        if flag.is_empty() || flag.contains([',', ' ', '\n']) || flag.starts_with('-') {
            return Err(CsiError::Invalid(format!(
                "mount flag {flag:?}: one option per entry, no commas or spaces"
            )));
        }
    }
    let p = path
        .to_str()
        .ok_or_else(|| CsiError::Invalid("path is not UTF-8".into()))?;
    run("mount", &["-o", &format!("remount,{}", flags.join(",")), p])
}

/// Unmount everything stacked at `target` and remove it. OK if it does not exist.
pub fn unpublish(target: &Path) -> Result<(), CsiError> {
    let tgt = target
        .to_str()
        .ok_or_else(|| CsiError::Invalid("target_path is not UTF-8".into()))?;
    while mount_at(target)?.is_some() {
        run("umount", &[tgt])?;
    }
    match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("stat", target, e)),
        Ok(m) if m.is_dir() => std::fs::remove_dir(target).map_err(|e| io("remove", target, e)),
        Ok(_) => std::fs::remove_file(target).map_err(|e| io("remove", target, e)),
    }
}

/// Usage of the filesystem mounted at `path`; NOT_FOUND unless `path` is a mount point.
pub fn stats(path: &Path) -> Result<VolumeStats, CsiError> {
    if mount_at(path)?.is_none() {
        return Err(CsiError::NotFound(format!(
            "nothing is mounted at {}",
            path.display()
        )));
    }
    let s = rustix::fs::statvfs(path).map_err(|e| io("statvfs", path, e.into()))?;
    let frsize = s.f_frsize.max(1);
    let total = s.f_blocks.saturating_mul(frsize);
    let free = s.f_bfree.saturating_mul(frsize);
    let available = s.f_bavail.saturating_mul(frsize);
    Ok(VolumeStats {
        bytes: Usage {
            total,
            used: total.saturating_sub(free),
            available,
        },
        inodes: Some(Usage {
            total: s.f_files,
            used: s.f_files.saturating_sub(s.f_ffree),
            available: s.f_favail,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
35 22 0:30 / /var/lib/kubelet/plugins/x rw,nosuid shared:20 - tmpfs tmpfs rw
40 22 7:3 / /var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/pvc-1/staging rw,noatime - ext4 /dev/loop3 rw
41 22 7:3 / /var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/pvc-1/mount ro,noatime - ext4 /dev/loop3 rw
42 22 0:5 /loop3 /var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-2/uid rw - devtmpfs udev rw
43 22 0:44 / /mnt/with\\040space rw - fuse.strongroom strongroom rw
garbage line
";

    #[test]
    fn parses_mountinfo() {
        let t = parse_mountinfo(SAMPLE);
        assert_eq!(t.len(), 6);
        assert_eq!(t[0].mount_point, PathBuf::from("/"));
        assert!(!t[0].read_only);
        assert_eq!(t[3].device, "7:3");
        assert!(t[3].read_only, "options ro");
        assert_eq!(t[3].fs_type, "ext4");
        assert_eq!(t[3].source, "/dev/loop3");
        assert_eq!(t[4].root, PathBuf::from("/loop3"));
        assert_eq!(t[5].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(t[5].fs_type, "fuse.strongroom");
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("a\\040b\\134c"), "a b\\c");
        assert_eq!(unescape("tail\\04"), "tail\\04");
    }

    #[test]
    fn unpublish_of_missing_target_is_ok_and_removes_plain_dirs() {
        let d = tempfile::tempdir().unwrap();
        unpublish(&d.path().join("absent")).unwrap();
        let t = d.path().join("target");
        std::fs::create_dir(&t).unwrap();
        unpublish(&t).unwrap();
        assert!(!t.exists());
    }

    #[test]
    fn stats_of_an_unmounted_path_is_not_found() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(stats(d.path()), Err(CsiError::NotFound(_))));
    }

    /// Real bind mounts (needs root and mount(8)); skipped elsewhere.
    #[test]
    fn bind_publish_read_only_and_unpublish() {
        let d = tempfile::tempdir().unwrap();
        let staging = d.path().join("staging");
        std::fs::create_dir(&staging).unwrap();
        // A real mount point to stand for the staged filesystem.
        let s = staging.to_str().unwrap();
        if run("mount", &["-t", "tmpfs", "-o", "size=4m", "tmpfs", s]).is_err() {
            eprintln!("skipped: cannot mount here (not root?)");
            return;
        }
        std::fs::write(staging.join("data"), b"hello").unwrap();
        let target = d.path().join("pods/target");
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        publish(&staging, &target, Kind::Filesystem, true).unwrap();
        assert_eq!(std::fs::read(target.join("data")).unwrap(), b"hello");
        assert!(
            std::fs::write(target.join("new"), b"x").is_err(),
            "read-only honoured"
        );
        assert!(mount_at(&target).unwrap().unwrap().read_only);
        // Same arguments: OK; read-write at the same target: ALREADY_EXISTS.
        publish(&staging, &target, Kind::Filesystem, true).unwrap();
        assert!(matches!(
            publish(&staging, &target, Kind::Filesystem, false),
            Err(CsiError::AlreadyExists(_))
        ));
        let st = stats(&target).unwrap();
        assert!(st.bytes.total > 0 && st.bytes.used <= st.bytes.total);
        assert!(st.inodes.unwrap().total > 0);
        unpublish(&target).unwrap();
        assert!(!target.exists());
        unpublish(&target).unwrap();

        // Block mode: a file target bound to the (here: stand-in) device node.
        let dev = d.path().join("dev-node");
        std::fs::write(&dev, vec![7u8; 4096]).unwrap();
        let btarget = d.path().join("pods/block-target");
        publish(&dev, &btarget, Kind::Block, false).unwrap();
        assert!(btarget.is_file() && mount_at(&btarget).unwrap().is_some());
        assert_eq!(std::fs::read(&btarget).unwrap()[0], 7);
        publish(&dev, &btarget, Kind::Block, false).unwrap();
        let other = d.path().join("other-node");
        std::fs::write(&other, b"x").unwrap();
        assert!(matches!(
            publish(&other, &btarget, Kind::Block, false),
            Err(CsiError::AlreadyExists(_))
        ));
        unpublish(&btarget).unwrap();
        assert!(!btarget.exists());
        run("umount", &[s]).unwrap();
    }
}
